import mongoose from 'mongoose';
import { pino } from 'pino';
import { startEmbeddedFerretDB } from '../dist/db/embedded-ferretdb.js';
import { tempDir } from './lib.mjs';
import { addProjectMember, createProject, registerUser, runBenchmark, startFerretDB, startPollen, finishedJobDocuments, insertInBatches, graphql, cpuSeconds } from './lib.mjs';
const NESTED = `query ProjectsPage($first: Int!) { projects(first: $first) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node {
  id name description createdAt myRole owner { id username } members { role user { id username } }
  trainingJobs(first: 3) { totalCount edges { node { id status statusReason currentRound totalRounds createdAt finishedAt latestMetrics { round phase values recordedAt } } } } } } } }`;
await runBenchmark(async () => {
  const ferretdb = process.env.UNIX ? await startEmbeddedFerretDB(tempDir('fdbu-'), pino({ level: 'warn' }), { socket: '/tmp/fdb-prof.sock' }) : await startFerretDB();
  if (process.env.UNIX) { const f = ferretdb; (await import('./lib.mjs')).onCleanup(() => f.stop()); }
  const pollen = await startPollen({ env: { MONGODB_URI: `${ferretdb.uri}pollen`, MAX_CONCURRENT_JOBS: '0' }, nodeArgs: process.env.PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/pollen-prof'] : [] });
  console.log('uri', ferretdb.uri);
  const reader = await registerUser(pollen, `p${Date.now()}`);
  const others = [];
  for (let i = 0; i < 6; i++) others.push(await registerUser(pollen, `m${Date.now()}x${i}`));
  const ids = [];
  for (let i = 0; i < 10; i++) {
    const id = await createProject(pollen, reader.token, `P ${i}`);
    for (const [j, role] of ['VIEWER', 'EDITOR', 'OWNER'].entries()) await addProjectMember(pollen, reader.token, id, others[(i + j) % 6].username, role);
    ids.push(id);
  }
  const client = await new mongoose.mongo.MongoClient(`${ferretdb.uri}pollen`).connect();
  const jobs = [];
  let clock = Date.now() - 1e9;
  for (const p of ids) for (let i = 0; i < 4; i++) jobs.push(finishedJobDocuments({ projectId: p, appId: p, configId: p, createdById: reader.userId, createdAt: new Date(clock += 60000), rounds: 5, failed: i === 3, index: i }).job);
  await insertInBatches(client.db('pollen').collection('training_jobs'), jobs);
  await client.close();
  for (let i = 0; i < 30; i++) await graphql(pollen.url, reader.token, NESTED, { first: 5 });
  const n = Number(process.env.N ?? 200);
  const c0 = cpuSeconds(pollen.pid), f0 = cpuSeconds(ferretdb.pid), t0 = performance.now();
  for (let i = 0; i < n; i++) await graphql(pollen.url, reader.token, NESTED, { first: 5 });
  console.log(`nested page of 5: ${((performance.now() - t0) / n).toFixed(2)} ms/req, Pollen CPU ${((cpuSeconds(pollen.pid) - c0) / n * 1000).toFixed(2)} ms/req, FerretDB CPU ${((cpuSeconds(ferretdb.pid) - f0) / n * 1000).toFixed(2)} ms/req`);
  const b0 = cpuSeconds(pollen.pid), t1 = performance.now();
  for (let i = 0; i < n; i++) await graphql(pollen.url, reader.token, '{ me { id } }');
  console.log(`me: ${((performance.now() - t1) / n).toFixed(2)} ms/req, Pollen CPU ${((cpuSeconds(pollen.pid) - b0) / n * 1000).toFixed(2)} ms/req`);
});
