-- wrk script for bench/frontdoor.py.
--   TOKENS_FILE: one token a line; each request takes the next (a fresh token per request).
--   TOKEN: one token for every request (the warm path).
--   DELAY_MS: pause between requests on a connection, to pace the load below peak.
--   REQUEST_PATH: the path to ask for (default /); `{n}` in it becomes a counter, so that
--     every request differs (an uncached metadata audience).
--   METADATA_FLAVOR: when set, sends `Metadata-Flavor: Google`.
-- Prints one line `RESULT requests seconds p50_us p99_us non2xx socket_errors` when done.

local tokens = {}
local single = os.getenv("TOKEN")
local file = os.getenv("TOKENS_FILE")
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")
local next_token = 1
local path = os.getenv("REQUEST_PATH") or "/"
local flavor = os.getenv("METADATA_FLAVOR")
local counter = 0

function init(args)
  if file and file ~= "" then
    for line in io.lines(file) do tokens[#tokens + 1] = line end
    -- Each thread starts at its own place in the list.
    next_token = math.random(#tokens)
  end
end

function request()
  local headers = {}
  if #tokens > 0 then
    headers["Authorization"] = "Bearer " .. tokens[next_token]
    next_token = next_token % #tokens + 1
  elseif single and single ~= "" then
    headers["Authorization"] = "Bearer " .. single
  end
  if flavor and flavor ~= "" then
    headers["Metadata-Flavor"] = "Google"
  end
  counter = counter + 1
  local p = path:gsub("{n}", tostring(counter) .. "-" .. tostring(math.random(1000000000)))
  return wrk.format("GET", p, headers)
end

if delay_ms > 0 then
  function delay() return delay_ms end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %.3f %d %d %d %d\n", summary.requests, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
