import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mongoose from 'mongoose';
import { inject } from 'vitest';
import { CreateProjectDocument, ProjectContentsDocument, UploadAppDocument } from './generated/graphql.js';
import { flowerAppZip } from './support/fixtures.js';
import { GraphQLClient, REPO_ROOT, signUp, usePollen } from './support/testkit.js';

const pollen = usePollen({ env: { MAX_UPLOAD_BYTES: String(2 * 1024 * 1024) } });
let client: GraphQLClient;
let projectId: string;
let hostileDir: string;

const upload = (bytes: Buffer, filename = 'app.zip', to = projectId, as = client) =>
  as.upload(UploadAppDocument, { projectId: to, file: null }, { file: { bytes, filename } });
let database: mongoose.mongo.MongoClient;
/** Apps in the project, and archive files in GridFS: a refused upload changes neither. */
const stored = async () => ({
  apps: (await client.data(ProjectContentsDocument, { id: projectId })).project!.apps.totalCount,
  archives: await database.db(pollen.database as string).collection('app_archives.files').countDocuments(),
  chunks: await database.db(pollen.database as string).collection('app_archives.chunks').countDocuments(),
});
const appCount = async () => (await stored()).apps;

beforeAll(async () => {
  ({ client } = await signUp(pollen, 'uploader'));
  projectId = (await client.data(CreateProjectDocument, { input: { name: 'uploads' } })).createProject.id;
  database = await new mongoose.mongo.MongoClient(inject('mongoUri')).connect();
  hostileDir = mkdtempSync(path.join(tmpdir(), 'pollen-hostile-'));
  execFileSync('python3', [path.join(REPO_ROOT, 'test/support/hostile-archives.py'), hostileDir]);
});
afterAll(async () => {
  await database?.close();
});

describe('uploading a Flower App', () => {
  it('stores it with what its pyproject.toml says', async () => {
    const bytes = await flowerAppZip({ name: 'digits', version: '2.1.0', config: 'num-server-rounds = 3\nlearning-rate = 0.05\n[tool.flwr.app.config.train]\nshuffle = true' });
    const { data, errors } = await upload(bytes);
    expect(errors).toBeUndefined();
    expect(data!.uploadApp).toMatchObject({
      name: 'digits', version: '2.1.0', publisher: 'pollen-tests',
      sha256: createHash('sha256').update(bytes).digest('hex'), sizeBytes: bytes.length,
      files: ['demo/__init__.py', 'demo/client_app.py', 'demo/server_app.py', 'pyproject.toml'],
      runConfigDefaults: { 'num-server-rounds': 3, 'learning-rate': 0.05, 'train.shuffle': true },
      uploadedBy: { username: 'uploader' }, project: { id: projectId },
    });
  });

  it('accepts an app zipped as one folder', async () => {
    const { data, errors } = await upload(await flowerAppZip({ name: 'foldered', folder: 'my-app' }));
    expect(errors).toBeUndefined();
    expect(data!.uploadApp.files).toContain('pyproject.toml');
  });

  it('returns the existing app when the same bytes are uploaded again, and stores them once', async () => {
    const bytes = await flowerAppZip({ name: 'twice' });
    const first = (await upload(bytes)).data!.uploadApp;
    const before = await appCount();
    const again = (await upload(bytes, 'renamed.zip')).data!.uploadApp;
    expect(again.id).toBe(first.id);
    expect(await appCount()).toBe(before);
  });

  it('lets anyone who may read the app download exactly the stored bytes', async () => {
    const bytes = await flowerAppZip({ name: 'download-me', version: '0.3.0' });
    const app = (await upload(bytes)).data!.uploadApp;
    const response = await fetch(`${pollen.origin}/apps/${app.id}/archive`, { headers: { authorization: `Bearer ${client.token}` } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/zip');
    expect(response.headers.get('content-disposition')).toBe('attachment; filename="download-me-0.3.0.zip"');
    expect(Buffer.from(await response.arrayBuffer()).equals(bytes)).toBe(true);
  });

  it('answers a download with a bad token 401 and a malformed id 400', async () => {
    const app = (await upload(await flowerAppZip({ name: 'guarded' }))).data!.uploadApp;
    expect((await fetch(`${pollen.origin}/apps/${app.id}/archive`, { headers: { authorization: 'Bearer forged' } })).status).toBe(401);
    expect((await fetch(`${pollen.origin}/apps/nope/archive`, { headers: { authorization: `Bearer ${client.token}` } })).status).toBe(400);
  });
});

describe('a hostile or broken archive', () => {
  const reasons = ['NOT_A_ZIP', 'PATH_TRAVERSAL', 'ABSOLUTE_PATH', 'SYMLINK', 'ZIP_BOMB', 'MISSING_FILE', 'BAD_PYPROJECT',
    'BAD_COMPONENT', 'DUPLICATE_ENTRY'];
  it.each(reasons)('%s is refused with that reason and nothing is stored', async (reason) => {
    const bytes = readFileSync(path.join(hostileDir, `${reason}.zip`));
    const before = await stored();
    const started = performance.now();
    const result = await upload(bytes);
    const elapsed = performance.now() - started;
    expect(result.errors).toHaveLength(1);
    expect(result.errors![0]!.extensions).toMatchObject({ code: 'INVALID_APP_ARCHIVE', reason });
    expect(result.errors![0]!.message.length).toBeGreaterThan(20);
    expect(await stored()).toEqual(before);
    if (reason === 'ZIP_BOMB') {
      expect(statSync(path.join(hostileDir, 'ZIP_BOMB.zip')).size).toBeLessThan(1024 * 1024);
      expect(result.errors![0]!.message).toMatch(/400 MB/);
      // Judged from the directory: refused long before 400 MB could be inflated.
      expect(elapsed).toBeLessThan(1_000);
    }
  });

  it('over MAX_UPLOAD_BYTES is refused as TOO_LARGE', async () => {
    // Random bytes do not compress, so the archive itself is over the 2 MB limit this instance has.
    const bytes = await flowerAppZip({ files: { 'demo/weights.txt': randomBytes(3 * 1024 * 1024).toString('base64') } });
    const before = await stored();
    const result = await upload(bytes);
    expect(result.errors![0]!.extensions).toMatchObject({ code: 'INVALID_APP_ARCHIVE', reason: 'TOO_LARGE' });
    expect(await stored()).toEqual(before);
  });
});
