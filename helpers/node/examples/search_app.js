// The example's `search` service: 200 for every request, on Cloud Run's PORT. With an
// argument, appends its process id to that file (the helper's tests check that it stops
// with frontdoor).
import * as fs from 'node:fs';
import * as http from 'node:http';

if (process.argv[2]) fs.appendFileSync(process.argv[2], `${process.pid}\n`);
http
  .createServer((request, response) => response.end(`results for ${request.url}\n`))
  .listen(Number(process.env.PORT), '127.0.0.1');
