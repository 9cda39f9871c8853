import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildSchema } from 'graphql';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './support/testkit.js';

const run = promisify(execFile);
const emitSchema = (...args: string[]) =>
  run(process.execPath, [path.join(REPO_ROOT, 'dist/app/emit-schema.js'), ...args], { cwd: REPO_ROOT });

describe('schema.graphql', () => {
  it('is exactly what the code produces', async () => {
    const { stdout } = await emitSchema('--check');
    expect(stdout).toMatch(/matches the code/);
  });

  it('is reported as drifted when it differs from the code', async () => {
    const copy = path.join(mkdtempSync(path.join(tmpdir(), 'pollen-schema-')), 'schema.graphql');
    writeFileSync(copy, readFileSync(path.join(REPO_ROOT, 'schema.graphql'), 'utf8').replace('me: User', 'me: User!'));
    await expect(emitSchema('--check', '--file', copy)).rejects.toMatchObject({ code: 1 });
  });

  // The contract lives beside the repository (../shared) on the team's machines and in CI.
  const contractFile = path.join(REPO_ROOT, '../shared/api-contract.graphql');
  it.skipIf(!existsSync(contractFile))('gives every contract field it implements the contract\'s type and arguments', () => {
    const schema = buildSchema(readFileSync(path.join(REPO_ROOT, 'schema.graphql'), 'utf8'));
    const contract = buildSchema(readFileSync(contractFile, 'utf8'));
    let compared = 0;
    for (const type of Object.values(schema.getTypeMap())) {
      const promised = contract.getType(type.name);
      if (type.name.startsWith('__') || !promised || !('getFields' in type) || !('getFields' in promised)) continue;
      const promisedFields = promised.getFields() as Record<string, { type: unknown; args?: Array<{ name: string; type: unknown }> }>;
      for (const [name, field] of Object.entries(type.getFields() as typeof promisedFields)) {
        const expected = promisedFields[name];
        if (!expected) continue; // an addition
        compared += 1;
        expect(String(field.type), `${type.name}.${name}`).toBe(String(expected.type));
        const args = (list?: Array<{ name: string; type: unknown }>) => (list ?? []).map((a) => `${a.name}: ${String(a.type)}`);
        expect(args(field.args), `${type.name}.${name} arguments`).toEqual(expect.arrayContaining(args(expected.args)));
      }
    }
    expect(compared).toBeGreaterThan(10);
  });
});
