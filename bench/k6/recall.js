// Benchmark load: recall as fast as VUS users get answers. Driven by bench/memory.py,
// which writes the request bodies (one JSON array of pre-serialised GraphQL requests,
// KEYWORD, SEMANTIC or HYBRID) to the file BODIES; each VU sends them in turn.

import http from 'k6/http';
import exec from 'k6/execution';
import { Rate } from 'k6/metrics';

const URL = __ENV.URL;
const failed = new Rate('failed');

// Each VU parses its own copy at init (a SharedArray costs more per request than this).
const bodies = JSON.parse(open(__ENV.BODIES));

export const options = {
  scenarios: {
    load: {
      executor: 'constant-vus',
      vus: parseInt(__ENV.VUS || '1', 10),
      duration: __ENV.DURATION || '10s',
      gracefulStop: '5s',
    },
  },
};

const params = { headers: { 'Content-Type': 'application/json' } };

export default function () {
  const i = (exec.vu.iterationInScenario * 7 + __VU) % bodies.length;
  const res = http.post(URL, bodies[i], params);
  failed.add(res.status !== 200 || res.body.indexOf('"errors"') !== -1 || res.body.indexOf('"recall":[]') !== -1);
}
