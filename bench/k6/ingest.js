// Benchmark load: upserts of BATCH points per request as fast as VUS users get answers.
// Driven by bench/run.py; MODE=graphql, plain or chroma as in query.js. The vectors are
// serialised once per VU; each request splices fresh ids in.

import http from 'k6/http';
import exec from 'k6/execution';
import { Counter, Rate } from 'k6/metrics';
import { rng, vector } from '../../loadtest/lib/graphql.js';

const MODE = __ENV.MODE || 'graphql';
const URL = __ENV.URL;
const DIMENSION = parseInt(__ENV.VECTOR_SIZE || '384', 10);
const BATCH = parseInt(__ENV.BATCH || '100', 10);
const COLLECTION = __ENV.COLLECTION || 'bench_ingest';
const failed = new Rate('failed');
const vectorsUpserted = new Counter('vectors_upserted');

const UPSERT = JSON.stringify(
  'mutation Upsert($points: [PointInput!]!, $collection: String) ' +
    '{ upsert(points: $points, collection: $collection) { upserted } }',
);

export const options = {
  scenarios: {
    load: {
      executor: 'constant-vus',
      vus: parseInt(__ENV.VUS || '4', 10),
      duration: __ENV.DURATION || '10s',
      gracefulStop: '30s',
    },
  },
};

const params = { headers: { 'Content-Type': 'application/json' }, timeout: '120s' };
let vectors = null;

function body(base) {
  const parts = new Array(BATCH);
  for (let i = 0; i < BATCH; i++) {
    const id = base + i;
    parts[i] = `{"id":${id},"vector":${vectors[i]},"payload":{"user":"user-${id % 10}","n":${id}}}`;
  }
  const points = `[${parts.join(',')}]`;
  const collection = JSON.stringify(COLLECTION);
  return MODE === 'graphql'
    ? `{"query":${UPSERT},"operationName":"Upsert","variables":{"collection":${collection},"points":${points}}}`
    : `{"collection":${collection},"points":${points}}`;
}

function chromaBody(base) {
  const ids = new Array(BATCH);
  const metadatas = new Array(BATCH);
  for (let i = 0; i < BATCH; i++) {
    const id = base + i;
    ids[i] = `"${id}"`;
    metadatas[i] = `{"user":"user-${id % 10}","n":${id}}`;
  }
  return `{"ids":[${ids.join(',')}],"embeddings":[${vectors.join(',')}],"metadatas":[${metadatas.join(',')}]}`;
}

export default function () {
  if (vectors === null) {
    const random = rng(exec.vu.idInTest * 7919 + 1);
    vectors = [];
    for (let i = 0; i < BATCH; i++) vectors.push(JSON.stringify(vector(random, DIMENSION)));
  }
  const base = exec.vu.idInTest * 1e9 + exec.vu.iterationInScenario * BATCH;
  const res = http.post(URL, MODE === 'chroma' ? chromaBody(base) : body(base), params);
  let upserted = 0;
  if (MODE === 'chroma') {
    if (res.status === 200 || res.status === 201) upserted = BATCH;
  } else if (res.status === 200) {
    const m = /"upserted":\s*(\d+)/.exec(res.body);
    if (m && res.body.indexOf('"errors"') === -1) upserted = parseInt(m[1], 10);
  }
  failed.add(upserted !== BATCH);
  vectorsUpserted.add(upserted);
}
