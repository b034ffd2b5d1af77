# Sourced by the bench scripts: `need TOOL...` installs, from Debian, each of the tools
# (package and command share the name) that is not on PATH, in one apt run.
need() {
  local missing=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
