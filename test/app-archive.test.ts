import { execFileSync } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GraphQLError } from 'graphql';
import JSZip from 'jszip';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_ARCHIVE_LIMITS, extractAppArchive, readAppArchive,
  type AppArchive, type ArchiveLimits, type ArchiveRejection,
} from '../src/modules/apps/app-archive.js';
import { crc32OfZeros, deflatedZeros, handBuiltArchive, storedEntries } from './support/zip-archives.mjs';

const MiB = 1024 * 1024;
const LIMITS: ArchiveLimits = { maxBytes: 20 * MiB, ...DEFAULT_ARCHIVE_LIMITS };
const scratch = mkdtempSync(path.join(tmpdir(), 'pollen-app-archive-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

// --- Fixtures ------------------------------------------------------------------------------------

function pyprojectToml({
  project = 'name = "quickstart"\nversion = "1.0.0"',
  components = 'serverapp = "quickstart.server_app:app"\nclientapp = "quickstart.client_app:app"',
  config = 'num-server-rounds = 3',
} = {}): string {
  return [
    '[build-system]', 'requires = ["hatchling"]', 'build-backend = "hatchling.build"', '',
    '[project]', project, 'dependencies = ["flwr[simulation]>=1.20.0"]', '',
    '[tool.flwr.app]', 'publisher = "pollen"', '',
    '[tool.flwr.app.components]', components, '',
    '[tool.flwr.app.config]', config, '',
  ].join('\n');
}

type Files = Record<string, string | Buffer>;

/** A valid app with pyproject.toml at the archive root. */
const APP = {
  'pyproject.toml': pyprojectToml(),
  'quickstart/__init__.py': '"""Quickstart."""\n',
  'quickstart/server_app.py': 'from flwr.server import ServerApp\n\napp = ServerApp()\n',
  'quickstart/client_app.py': 'from flwr.client import ClientApp\n\napp = ClientApp()\n',
} satisfies Record<string, string>;

const withPyproject = (toml: string | Buffer): Files => ({ ...APP, 'pyproject.toml': toml });

async function jszipArchive(files: Files, compression: 'DEFLATE' | 'STORE' = 'DEFLATE'): Promise<Buffer> {
  const zip = new JSZip();
  for (const [name, content] of Object.entries(files)) zip.file(name, content);
  return zip.generateAsync({ type: 'nodebuffer', compression });
}

/** Python's zipfile writes what jszip refuses to: `statements` run after `files` are written to `z`. */
function pythonArchive(files: Record<string, string>, statements = ''): Buffer {
  const out = path.join(scratch, `${randomUUID()}.zip`);
  const script = [
    'import json, sys, zipfile',
    "z = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED)",
    'for name, text in json.loads(sys.argv[2]).items():',
    '    z.writestr(name, text)',
    statements,
    'z.close()',
  ].join('\n');
  execFileSync('python3', ['-W', 'ignore', '-c', script, out, JSON.stringify(files)], { stdio: 'pipe' });
  return readFileSync(out);
}


// --- Byte patching of well-formed archives (ASCII names, no comment) --------------------------------

const HEADER_FIELDS = {
  flags: { local: 6, central: 8, bytes: 2 },
  method: { local: 8, central: 10, bytes: 2 },
  crc32: { local: 14, central: 16, bytes: 4 },
  uncompressedSize: { local: 22, central: 24, bytes: 4 },
} as const;

function headersOf(zip: Buffer, name: string): { local: number; central: number } {
  const find = (signature: number, nameAt: number, nameLengthAt: number) => {
    const marker = Buffer.alloc(4);
    marker.writeUInt32LE(signature);
    for (let at = zip.indexOf(marker); at !== -1; at = zip.indexOf(marker, at + 1)) {
      if (zip.readUInt16LE(at + nameLengthAt) === name.length && zip.toString('latin1', at + nameAt, at + nameAt + name.length) === name) return at;
    }
    throw new Error(`No header for ${name}`);
  };
  return { local: find(0x04034b50, 30, 26), central: find(0x02014b50, 46, 28) };
}

function withHeaderField(zip: Buffer, name: string, field: keyof typeof HEADER_FIELDS, value: (old: number) => number): Buffer {
  const copy = Buffer.from(zip);
  const headers = headersOf(copy, name);
  const { bytes } = HEADER_FIELDS[field];
  for (const kind of ['local', 'central'] as const) {
    const at = headers[kind] + HEADER_FIELDS[field][kind];
    const old = bytes === 2 ? copy.readUInt16LE(at) : copy.readUInt32LE(at);
    if (bytes === 2) copy.writeUInt16LE(value(old), at);
    else copy.writeUInt32LE(value(old) >>> 0, at);
  }
  return copy;
}

/** Renames an entry in place (same length), in its local header, central header or both. */
function renamed(zip: Buffer, from: string, to: string, where: ReadonlyArray<'local' | 'central'> = ['local', 'central']): Buffer {
  const copy = Buffer.from(zip);
  const headers = headersOf(copy, from);
  for (const kind of where) copy.write(to, headers[kind] + (kind === 'local' ? 30 : 46), 'latin1');
  return copy;
}

/** Patches the end-of-central-directory record, the last 22 bytes of an archive without comment. */
function withEndRecord(zip: Buffer, patch: (record: Buffer) => void): Buffer {
  const copy = Buffer.from(zip);
  patch(copy.subarray(copy.length - 22));
  return copy;
}

function dataOffset(zip: Buffer, name: string): number {
  const { local } = headersOf(zip, name);
  return local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
}

// --- Assertions ----------------------------------------------------------------------------------

async function rejectionOf(work: Promise<unknown>): Promise<{ reason: ArchiveRejection; message: string }> {
  const error = await work.then(() => { throw new Error('The archive was accepted.'); }, (e: unknown) => e);
  expect(error).toBeInstanceOf(GraphQLError);
  const { extensions, message } = error as GraphQLError;
  expect(extensions.code).toBe('INVALID_APP_ARCHIVE');
  return { reason: extensions.reason as ArchiveRejection, message };
}

const readRejection = (bytes: Buffer, limits = LIMITS) => rejectionOf(readAppArchive(bytes, limits));

function filesUnder(directory: string): string[] {
  return (readdirSync(directory, { recursive: true }) as string[])
    .filter((file) => statSync(path.join(directory, file)).isFile())
    .sort();
}

// --- Tests ---------------------------------------------------------------------------------------

describe('readAppArchive accepts', () => {
  it('an app with pyproject.toml at the archive root', async () => {
    const bytes = await jszipArchive({ ...APP, 'README.md': '# Quickstart\n' });
    const archive = await readAppArchive(bytes, LIMITS);
    expect(archive).toEqual({
      sha256: createHash('sha256').update(bytes).digest('hex'),
      sizeBytes: bytes.length,
      rootPrefix: '',
      files: ['README.md', 'pyproject.toml', 'quickstart/__init__.py', 'quickstart/client_app.py', 'quickstart/server_app.py'],
      name: 'quickstart',
      version: '1.0.0',
      publisher: 'pollen',
      components: { serverapp: 'quickstart.server_app:app', clientapp: 'quickstart.client_app:app' },
      runConfigDefaults: { 'num-server-rounds': 3 },
    });
  });

  it('an app zipped as one folder by Finder, in the Flower template layout', async () => {
    const bytes = await jszipArchive({
      'myapp/pyproject.toml': pyprojectToml({
        project: 'name = "myapp"\nversion = "0.1.0"',
        components: 'serverapp = "myapp.server_app:app"\nclientapp = "myapp.client_app:app"',
      }),
      'myapp/README.md': '# myapp\n',
      'myapp/myapp/__init__.py': '',
      'myapp/myapp/server_app.py': 'app = None\n',
      'myapp/myapp/client_app.py': 'app = None\n',
      'myapp/myapp/task.py': 'def train(): ...\n',
      'myapp/.DS_Store': randomBytes(64),
      '__MACOSX/myapp/._pyproject.toml': randomBytes(64),
      '__MACOSX/myapp/myapp/._task.py': randomBytes(64),
    });
    const archive = await readAppArchive(bytes, LIMITS);
    expect(archive).toMatchObject({
      rootPrefix: 'myapp/',
      files: ['README.md', 'myapp/__init__.py', 'myapp/client_app.py', 'myapp/server_app.py', 'myapp/task.py', 'pyproject.toml'],
      name: 'myapp',
      version: '0.1.0',
      components: { serverapp: 'myapp.server_app:app', clientapp: 'myapp.client_app:app' },
    });
  });

  it('run config defaults flattened into dotted keys, with their TOML types', async () => {
    const config = [
      'num-server-rounds = 3', 'fraction-fit = 0.5', 'big = 9007199254740991', 'exponent = 1e3', 'verbose = true',
      'run-name = "Small run"', 'train.lr = 0.01', 'optimizer = { name = "sgd", momentum = 0.9 }',
      '', '[tool.flwr.app.config.eval]', 'batch-size = 64', 'metrics.top-k = 5',
    ].join('\n');
    const archive = await readAppArchive(await jszipArchive(withPyproject(pyprojectToml({ config }))), LIMITS);
    expect(archive.runConfigDefaults).toEqual({
      'num-server-rounds': 3, 'fraction-fit': 0.5, big: 9007199254740991, exponent: 1000, verbose: true,
      'run-name': 'Small run', 'train.lr': 0.01, 'optimizer.name': 'sgd', 'optimizer.momentum': 0.9,
      'eval.batch-size': 64, 'eval.metrics.top-k': 5,
    });
    expect(typeof archive.runConfigDefaults['num-server-rounds']).toBe('number');
  });

  it('no publisher and no run config', async () => {
    const toml = '[project]\nname = "bare"\nversion = "1"\n\n[tool.flwr.app.components]\n' +
      'serverapp = "quickstart.server_app:app"\nclientapp = "quickstart.client_app:app"\n';
    expect(await readAppArchive(await jszipArchive(withPyproject(toml)), LIMITS))
      .toMatchObject({ name: 'bare', publisher: null, runConfigDefaults: {} });
  });

  it('a component given as a package, through its __init__.py', async () => {
    const components = 'serverapp = "quickstart:server"\nclientapp = "quickstart.client_app:app"';
    const archive = await readAppArchive(await jszipArchive(withPyproject(pyprojectToml({ components }))), LIMITS);
    expect(archive.components.serverapp).toBe('quickstart:server');
  });

  it('ZIP64 central directory records, read through the ZIP64 end record and extra fields', async () => {
    const archive = await readAppArchive(handBuiltArchive(storedEntries(APP), { zip64: true }), LIMITS);
    expect(archive.files).toEqual(Object.keys(APP).sort());
  });

  it('exactly maxEntries entries', async () => {
    const fillers = Array.from({ length: 1000 - Object.keys(APP).length }, (_, i) => ({ name: `data/${i}.txt`, data: Buffer.from(`${i}`) }));
    const archive = await readAppArchive(handBuiltArchive([...storedEntries(APP), ...fillers]), LIMITS);
    expect(archive.files).toHaveLength(1000);
  });
});

describe('readAppArchive refuses', () => {
  it('bytes over maxBytes (TOO_LARGE), saying the limit', async () => {
    const bytes = await jszipArchive({ ...APP, 'weights.bin': randomBytes(3 * MiB) }, 'STORE');
    expect(await readRejection(bytes, { ...LIMITS, maxBytes: 2 * MiB }))
      .toEqual({ reason: 'TOO_LARGE', message: 'The archive is 3 MB, more than the 2 MB limit.' });
    expect((await readRejection(bytes, { ...LIMITS, maxBytes: bytes.length - 1 })).message)
      .toBe(`The archive is ${bytes.length} bytes, more than the ${bytes.length - 1}-byte limit.`);
  });

  describe('what is not a ZIP (NOT_A_ZIP)', () => {
    const valid = jszipArchive(APP);
    const cases: Array<[string, () => Promise<Buffer>, RegExp]> = [
      ['a PDF renamed .zip', async () => Buffer.from('%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n'), /not a ZIP archive/],
      ['random bytes', async () => randomBytes(4096), /not a ZIP archive/],
      ['an empty file', async () => Buffer.alloc(0), /empty/],
      ['a truncated download', async () => (await valid).subarray(0, (await valid).length - 10), /not a ZIP archive/],
      ['a central directory outside the file', async () => withEndRecord(await valid, (end) => end.writeUInt32LE(1_000_000, 16)), /lies outside/],
      ['a multi-disk archive', async () => withEndRecord(await valid, (end) => end.writeUInt16LE(1, 4)), /several disks/],
      ['data prepended to the archive', async () => Buffer.concat([Buffer.from('#!/bin/sh\nexit 0\n'), await valid]), /does not start with a ZIP file header/],
      ['an unsupported compression method', async () => withHeaderField(await valid, 'pyproject.toml', 'method', () => 12), /compression method 12/],
      ['local and central names that disagree', async () => renamed(await valid, 'quickstart/client_app.py', 'quickstart/client_app.pz', ['local']), /local header names/],
      ['damaged deflate data', async () => {
        const damaged = Buffer.from(await valid);
        damaged.fill(0xff, dataOffset(damaged, 'pyproject.toml'), dataOffset(damaged, 'pyproject.toml') + 4);
        return damaged;
      }, /not valid deflate data/],
      ['a CRC-32 mismatch', async () => withHeaderField(await valid, 'quickstart/server_app.py', 'crc32', (crc) => crc ^ 1), /fails its CRC-32 check/],
    ];
    it.each(cases)('%s', async (_label, bytes, message) => {
      const rejection = await readRejection(await bytes());
      expect(rejection.reason).toBe('NOT_A_ZIP');
      expect(rejection.message).toMatch(message);
    });
  });

  it('more than maxEntries entries (TOO_MANY_ENTRIES)', async () => {
    const fillers = Array.from({ length: 1001 - Object.keys(APP).length }, (_, i) => ({ name: `data/${i}.txt`, data: Buffer.from(`${i}`) }));
    expect(await readRejection(handBuiltArchive([...storedEntries(APP), ...fillers])))
      .toEqual({ reason: 'TOO_MANY_ENTRIES', message: 'The archive has 1001 entries, more than the limit of 1000.' });
  });

  it('a 400 MB run of zeros compressed under 1 MB, from the directory alone (ZIP_BOMB)', async () => {
    const bomb = handBuiltArchive([...storedEntries(APP), {
      name: 'quickstart/weights.bin', data: deflatedZeros(400), method: 8, crc32: crc32OfZeros(400), uncompressedSize: 400 * MiB,
    }]);
    expect(bomb.length).toBeLessThan(MiB);
    const started = performance.now();
    const rejection = await readRejection(bomb);
    // A bound on correctness, not speed: inflating 400 MB would take far longer.
    expect(performance.now() - started).toBeLessThan(1000);
    expect(rejection).toEqual({ reason: 'ZIP_BOMB', message: 'The archive expands to 400 MB, more than the 100 MB limit.' });
  });

  it('one entry over 1 MB compressed beyond the ratio limit (ZIP_BOMB)', async () => {
    const rejection = await readRejection(await jszipArchive({ ...APP, 'zeros.bin': Buffer.alloc(5 * MiB) }));
    expect(rejection.reason).toBe('ZIP_BOMB');
    expect(rejection.message).toMatch(/^"zeros\.bin" expands from [\d.]+ KB to 5 MB, more than the 200:1 compression ratio/);
  });

  it('an entry that inflates past the size its headers declare (ZIP_BOMB, while inflating)', async () => {
    const honest = await jszipArchive({ ...APP, 'quickstart/weights.bin': Buffer.alloc(512 * 1024, 'A') });
    const lying = withHeaderField(honest, 'quickstart/weights.bin', 'uncompressedSize', () => 10);
    expect(await readRejection(lying)).toEqual({
      reason: 'ZIP_BOMB', message: '"quickstart/weights.bin" inflates to more than the 10 bytes its header declares.',
    });
  });

  describe('entry paths', () => {
    it.each([
      ['../evil.py', 'PATH_TRAVERSAL', /contains a "\.\." segment/],
      ['quickstart/../../evil.py', 'PATH_TRAVERSAL', /contains a "\.\." segment/],
      ['quickstart\\evil.py', 'PATH_TRAVERSAL', /contains a backslash/],
      ['quickstart//evil.py', 'PATH_TRAVERSAL', /empty or "\." path segment/],
      ['quickstart/./evil.py', 'PATH_TRAVERSAL', /empty or "\." path segment/],
      ['__MACOSX/../../evil.py', 'PATH_TRAVERSAL', /contains a "\.\." segment/],
      ['/etc/passwd', 'ABSOLUTE_PATH', /^"\/etc\/passwd" is an absolute path/],
      ['C:/x.py', 'ABSOLUTE_PATH', /^"C:\/x\.py" is an absolute path/],
      ['C:x.py', 'ABSOLUTE_PATH', /is an absolute path/],
    ])('%s (%s)', async (name, reason, message) => {
      const rejection = await readRejection(pythonArchive(APP, `z.writestr(${JSON.stringify(name)}, 'print("pwned")')`));
      expect(rejection.reason).toBe(reason);
      expect(rejection.message).toMatch(message);
    });

    it('a NUL byte in a name (PATH_TRAVERSAL)', async () => {
      const bytes = renamed(await jszipArchive({ ...APP, 'quickstart/evil.py.txt': 'x' }), 'quickstart/evil.py.txt', 'quickstart/evil.py\0txt');
      expect(await readRejection(bytes)).toEqual({ reason: 'PATH_TRAVERSAL', message: '"quickstart/evil.py\\u0000txt" contains a NUL byte.' });
    });
  });

  it.each([
    ['in the app', 'quickstart/link.py'],
    ['under __MACOSX, which is ignored but still checked', '__MACOSX/quickstart/._link.py'],
  ])('a symbolic link %s (SYMLINK)', async (_where, name) => {
    const bytes = pythonArchive(APP, [
      `link = zipfile.ZipInfo(${JSON.stringify(name)})`,
      'link.create_system = 3',
      'link.external_attr = 0o120777 << 16',
      "z.writestr(link, '/etc/passwd')",
    ].join('\n'));
    expect(await readRejection(bytes)).toEqual({
      reason: 'SYMLINK', message: `"${name}" is a symbolic link; an app archive may only hold regular files and folders.`,
    });
  });

  it.each([
    ['the same name twice', "z.writestr('quickstart/server_app.py', 'app = 2')", /holds "quickstart\/server_app\.py" more than once/],
    ['a folder and a file of the same name', "z.writestr('quickstart/data/', '')\nz.writestr('quickstart/data', 'x')", /holds "quickstart\/data" more than once/],
    ['a file that is also a folder', "z.writestr('quickstart/data', 'x')\nz.writestr('quickstart/data/train.csv', 'x')", /"quickstart\/data" is both a file and a folder/],
  ])('%s (DUPLICATE_ENTRY)', async (_label, statements, message) => {
    const rejection = await readRejection(pythonArchive(APP, statements));
    expect(rejection.reason).toBe('DUPLICATE_ENTRY');
    expect(rejection.message).toMatch(message);
  });

  it('an encrypted entry (ENCRYPTED)', async () => {
    const bytes = withHeaderField(await jszipArchive(APP), 'quickstart/client_app.py', 'flags', (flags) => flags | 0x0001);
    expect(await readRejection(bytes)).toEqual({
      reason: 'ENCRYPTED', message: '"quickstart/client_app.py" is encrypted; create the archive without a password.',
    });
  });

  describe('a missing file (MISSING_FILE)', () => {
    const { 'pyproject.toml': toml, 'quickstart/server_app.py': _server, ...withoutServerApp } = APP;
    const { 'pyproject.toml': _pyproject, ...withoutPyproject } = APP;
    it.each<[string, Files, RegExp]>([
      ['no server_app.py', { 'pyproject.toml': toml, ...withoutServerApp }, /^There is no server_app\.py anywhere under the archive root/],
      ['no client_app.py in the app folder', { 'app/pyproject.toml': toml, 'app/quickstart/server_app.py': '' }, /^There is no client_app\.py anywhere under the app folder app\//],
      ['no pyproject.toml at all', withoutPyproject, /^There is no pyproject\.toml at the archive root/],
      ['pyproject.toml in one of two top-level folders', { 'a/pyproject.toml': toml, 'b/quickstart/server_app.py': '', 'b/quickstart/client_app.py': '' }, /^There is no pyproject\.toml at the archive root\. Zip the app folder/],
      ['a single folder without pyproject.toml', { 'app/quickstart/server_app.py': '', 'app/quickstart/client_app.py': '' }, /in its top-level folder app\/\.$/],
    ])('%s', async (_label, files, message) => {
      const rejection = await readRejection(await jszipArchive(files));
      expect(rejection.reason).toBe('MISSING_FILE');
      expect(rejection.message).toMatch(message);
    });
  });

  describe('a bad pyproject.toml (BAD_PYPROJECT)', () => {
    it.each<[string, string | Buffer, RegExp]>([
      ['broken TOML, with its line', '[project]\nname = "quickstart"\nversion = 1.0.0\n', /^pyproject\.toml line 3, column 14: illegal character in numeric literal\.$/],
      ['no [project] version', pyprojectToml({ project: 'name = "quickstart"' }), /needs a non-empty string version in \[project\], such as version = "1\.0\.0"\.$/],
      ['an empty [project] name', pyprojectToml({ project: 'name = ""\nversion = "1"' }), /needs a non-empty string name in \[project\].*; it has ""\.$/],
      ['no components', '[project]\nname = "quickstart"\nversion = "1"\n', /serverapp in \[tool\.flwr\.app\.components\]/],
      ['an array in the run config', pyprojectToml({ config: 'layers = [64, 32]' }), /^\[tool\.flwr\.app\.config\] layers is an array; run config values must be/],
      ['an array in a run config sub-table', pyprojectToml({ config: 'lr = 0.1\n\n[tool.flwr.app.config.model]\nlayers = [64]' }), /\] model\.layers is an array/],
      ['a date in the run config', pyprojectToml({ config: 'start = 2024-01-01' }), /\] start is a date or time/],
      ['NaN in the run config', pyprojectToml({ config: 'lr = nan' }), /\] lr is the non-finite number NaN/],
      ['an integer beyond 2^53', pyprojectToml({ config: 'seed = 9007199254740993' }), /line \d+, column \d+: integer value cannot be represented losslessly/],
      ['run config tables nested past the call stack', pyprojectToml({ config: `${Array(100_000).fill('a').join('.')} = 1` }), /nests tables more than 64 levels deep/],
      ['a dotted key that collides after flattening', pyprojectToml({ config: 'train.lr = 0.1\n"train.lr" = 0.2' }), /defines train\.lr twice/],
      ['a publisher that is not a string', pyprojectToml().replace('publisher = "pollen"', 'publisher = 7'), /publisher must be a string; it is the number 7/],
      ['tool.flwr.app that is not a table', '[project]\nname = "q"\nversion = "1"\n[tool.flwr]\napp = 3\n', /tool\.flwr\.app must be a table/],
      ['bytes that are not UTF-8', Buffer.from([0x5b, 0x70, 0xff, 0xfe, 0x5d]), /not valid UTF-8/],
      ['a byte order mark, which Flower cannot read', `\uFEFF${pyprojectToml()}`, /byte order mark/],
      ['a pyproject.toml over 1 MB', `${pyprojectToml()}# ${randomBytes(MiB).toString('base64')}\n`, /^pyproject\.toml is 1\.\d MB, more than the 1 MB limit\.$/],
    ])('%s', async (_label, toml, message) => {
      const rejection = await readRejection(await jszipArchive(withPyproject(toml)));
      expect(rejection.reason).toBe('BAD_PYPROJECT');
      expect(rejection.message).toMatch(message);
    });
  });

  describe('a bad component (BAD_COMPONENT)', () => {
    it.each([
      ['a malformed reference', 'serverapp = "quickstart/server_app.py"\nclientapp = "quickstart.client_app:app"',
        '[tool.flwr.app.components] serverapp = "quickstart/server_app.py" is not of the form module.path:attribute, such as "myapp.server_app:app".'],
      ['a reference without attribute', 'serverapp = "quickstart.server_app:app"\nclientapp = "quickstart.client_app"',
        '[tool.flwr.app.components] clientapp = "quickstart.client_app" is not of the form module.path:attribute, such as "myapp.client_app:app".'],
      ['a module missing from the archive', 'serverapp = "x:y"\nclientapp = "quickstart.client_app:app"',
        '[tool.flwr.app.components] serverapp = "x:y" points at module x, but there is no x.py or x/__init__.py under the archive root.'],
      ['a nested module missing from the archive', 'serverapp = "quickstart.server_app:app"\nclientapp = "quickstart.clients.app:app"',
        '[tool.flwr.app.components] clientapp = "quickstart.clients.app:app" points at module quickstart.clients.app, ' +
        'but there is no quickstart/clients/app.py or quickstart/clients/app/__init__.py under the archive root.'],
    ])('%s', async (_label, components, message) => {
      expect(await readRejection(await jszipArchive(withPyproject(pyprojectToml({ components })))))
        .toEqual({ reason: 'BAD_COMPONENT', message });
    });
  });
});

describe('extractAppArchive', () => {
  const weights = randomBytes(64 * 1024);

  it('writes exactly the app files, byte for byte, with mode 0644', async () => {
    const files: Files = {
      'myapp/pyproject.toml': pyprojectToml(),
      'myapp/quickstart/server_app.py': APP['quickstart/server_app.py'],
      'myapp/quickstart/client_app.py': APP['quickstart/client_app.py'],
      'myapp/quickstart/__init__.py': '',
      'myapp/quickstart/weights.bin': weights,
      '__MACOSX/myapp/._pyproject.toml': 'finder noise',
    };
    const bytes = await jszipArchive(files);
    const archive = await readAppArchive(bytes, LIMITS);
    const target = path.join(scratch, 'extracted', 'app');
    await extractAppArchive(bytes, archive, target, LIMITS);
    expect(filesUnder(target)).toEqual(archive.files);
    for (const file of archive.files) {
      const original = files[`myapp/${file}`]!;
      expect(readFileSync(path.join(target, file))).toEqual(typeof original === 'string' ? Buffer.from(original) : original);
      expect(statSync(path.join(target, file)).mode & 0o777).toBe(0o644);
    }
  });

  it('refuses an archive whose header lies, even given a forged AppArchive, and leaves nothing behind', async () => {
    const honest = await jszipArchive({ ...APP, 'quickstart/weights.bin': Buffer.alloc(512 * 1024, 'A') });
    const lying = withHeaderField(honest, 'quickstart/weights.bin', 'uncompressedSize', () => 10);
    const forged: AppArchive = {
      ...(await readAppArchive(honest, LIMITS)),
      sha256: createHash('sha256').update(lying).digest('hex'),
    };
    const target = path.join(scratch, 'lying');
    expect((await rejectionOf(extractAppArchive(lying, forged, target, LIMITS))).reason).toBe('ZIP_BOMB');
    expect(existsSync(target)).toBe(false);
  });

  it('refuses a path traversal even given a forged AppArchive', async () => {
    const hostile = pythonArchive(APP, "z.writestr('../../escaped.py', 'print(1)')");
    const forged: AppArchive = {
      ...(await readAppArchive(await jszipArchive(APP), LIMITS)),
      sha256: createHash('sha256').update(hostile).digest('hex'),
    };
    const target = path.join(scratch, 'traversal', 'a', 'b');
    expect((await rejectionOf(extractAppArchive(hostile, forged, target, LIMITS))).reason).toBe('PATH_TRAVERSAL');
    expect(existsSync(path.join(scratch, 'traversal'))).toBe(false);
  });

  it('refuses bytes that are not the archive it was given', async () => {
    const archive = await readAppArchive(await jszipArchive(APP), LIMITS);
    const other = await jszipArchive({ ...APP, 'README.md': 'other' });
    await expect(extractAppArchive(other, archive, path.join(scratch, 'other'), LIMITS)).rejects.toThrow(/not the archive/);
  });
});
