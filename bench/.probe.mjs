import mongoose from 'mongoose';
import { createProject, registerUser, runBenchmark, startFerretDB, startPollen, finishedJobDocuments, insertInBatches, cpuSeconds } from './lib.mjs';
await runBenchmark(async () => {
  const ferretdb = await startFerretDB();
  const pollen = await startPollen({ env: { MONGODB_URI: `${ferretdb.uri}pollen`, MAX_CONCURRENT_JOBS: '0' } });
  const reader = await registerUser(pollen, `p${Date.now()}`);
  const ids = [];
  for (let i = 0; i < 51; i++) ids.push(await createProject(pollen, reader.token, `P ${i}`));
  const client = await new mongoose.mongo.MongoClient(`${ferretdb.uri}pollen`).connect();
  const db = client.db('pollen');
  const jobs = [];
  let clock = Date.now() - 1e9;
  for (const [k, p] of ids.entries()) for (let i = 0; i < (k === 50 ? Number(process.env.BIG ?? 2000) : 4); i++) {
    jobs.push(finishedJobDocuments({ projectId: p, appId: p, configId: p, createdById: reader.userId, createdAt: new Date(clock += 60000), rounds: 8, failed: false, index: i }).job);
  }
  await insertInBatches(db.collection('training_jobs'), jobs);
  const { ObjectId } = mongoose.mongo;
  const uid = new ObjectId(reader.userId);
  const page = ids.slice(-10).map((i) => new ObjectId(i));
  const t = async (name, f) => { await f(); const c = cpuSeconds(ferretdb.pid); const s = performance.now(); for (let i = 0; i < 20; i++) await f(); console.log(name.padEnd(18), ((performance.now() - s) / 20).toFixed(2), 'ms', ((cpuSeconds(ferretdb.pid) - c) / 20 * 1000).toFixed(2), 'ms FerretDB CPU'); };
  const P = db.collection('projects'), J = db.collection('training_jobs');
  await t('projects find', () => P.find({ 'members.userId': uid }).sort({ createdAt: -1, _id: -1 }).limit(11).toArray());
  await t('projects count', () => P.countDocuments({ 'members.userId': uid }));
  await t('jobs group count', () => J.aggregate([{ $match: { projectId: { $in: page } } }, { $group: { _id: '$projectId', count: { $sum: 1 } } }]).toArray());
  await t('jobs find IN', () => J.find({ projectId: { $in: page } }).sort({ createdAt: -1, _id: -1 }).limit(40).batchSize(40).toArray());
  await t('jobs find one', () => J.find({ projectId: { $in: [page[9]] } }).sort({ createdAt: -1, _id: -1 }).limit(21).toArray());
  await t('users IN', () => db.collection('users').find({ _id: { $in: [uid, new ObjectId()] } }).toArray());
  await t('session by id', () => db.collection('sessions').find({ _id: new ObjectId() }).toArray());
  if (process.env.PLAN) console.log(JSON.stringify((await J.find({ projectId: { $in: page } }).sort({ createdAt: -1, _id: -1 }).limit(40).explain()).queryPlanner).slice(0, 1500));
  await client.close();
});
