// Benchmark load: nearest-neighbour queries as fast as VUS users get answers.
// Driven by bench/run.py; MODE=graphql sends the GraphQL operation, MODE=plain the same
// request to a plain JSON endpoint (bench/plain_app.py, bench/raw_app.py), MODE=chroma
// to a Chroma collection's query route. QUERIES (a JSON file of vectors) gives the
// query vectors; without it they are random. Bodies are serialised once per VU.

import http from 'k6/http';
import exec from 'k6/execution';
import { Rate } from 'k6/metrics';
import { rng, vector } from '../../loadtest/lib/graphql.js';

const MODE = __ENV.MODE || 'graphql';
const URL = __ENV.URL;
const DIMENSION = parseInt(__ENV.VECTOR_SIZE || '384', 10);
const LIMIT = parseInt(__ENV.LIMIT || '10', 10);
const failed = new Rate('failed');

const QUERY =
  'query Recall($vector: Vector!, $limit: Int!) ' +
  '{ query(vector: $vector, limit: $limit) { id score payload } }';

// Each VU serialises its own bodies once, at init: reading a SharedArray costs k6 more
// CPU per request than the request itself, and k6 shares the machine with the servers.
function body(v) {
  if (MODE === 'graphql') {
    return JSON.stringify({ query: QUERY, operationName: 'Recall', variables: { vector: v, limit: LIMIT } });
  }
  if (MODE === 'chroma') {
    return JSON.stringify({ query_embeddings: [v], n_results: LIMIT, include: ['metadatas', 'distances'] });
  }
  return JSON.stringify({ vector: v, limit: LIMIT });
}

function makeBodies(seedBase) {
  const random = rng(42 + seedBase * 7919);
  const given = __ENV.QUERIES ? JSON.parse(open(__ENV.QUERIES)) : null;
  const out = [];
  for (let i = 0; i < 64; i++) {
    out.push(body(given ? given[(seedBase * 64 + i) % given.length] : vector(random, DIMENSION)));
  }
  return out;
}

const FOUND = MODE === 'chroma' ? '"ids"' : '"id"';

const bodies = makeBodies(__VU);

export const options = {
  scenarios: {
    load: {
      executor: 'constant-vus',
      vus: parseInt(__ENV.VUS || '10', 10),
      duration: __ENV.DURATION || '10s',
      gracefulStop: '5s',
    },
  },
};

const params = { headers: { 'Content-Type': 'application/json' } };

export default function () {
  const i = exec.vu.iterationInScenario % bodies.length;
  const res = http.post(URL, bodies[i], params);
  failed.add(res.status !== 200 || res.body.indexOf('"errors"') !== -1 || res.body.indexOf(FOUND) === -1);
}
