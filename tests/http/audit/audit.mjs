// Runs graphql-http's serverAudits, one after another, against the URL given and prints
// one JSON line per audit: id, name, status and, when it did not pass, the reason and
// the response. With --preflight every request carries `graphql-require-preflight`, as
// a non-browser client's would, so that the GET audits get past the CSRF guard.
import { serverAudits } from 'graphql-http';

const [url, ...flags] = process.argv.slice(2);
if (!url) {
  console.error('usage: node audit.mjs URL [--preflight]');
  process.exit(2);
}
const preflight = flags.includes('--preflight');

function fetchFn(input, init = {}) {
  if (!preflight) {
    return fetch(input, init);
  }
  const headers = new Headers(init.headers);
  headers.set('graphql-require-preflight', '1');
  return fetch(input, { ...init, headers });
}

for (const audit of serverAudits({ url, fetchFn })) {
  const result = await audit.fn();
  const line = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    line.reason = result.reason;
    line.responseStatus = result.response.status;
    line.responseBody = await result.response.text().catch(() => '(already read)');
  }
  console.log(JSON.stringify(line));
}
