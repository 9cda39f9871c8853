import { execFile } from 'node:child_process';
import { link, mkdir, readFile, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface DeployKey {
  /** Path of the private half (mode 0600); it never leaves this host. */
  privateKeyFile: string;
  /** The OpenSSH public key line, for the hosts' authorized_keys. */
  publicKey: string;
}

/**
 * Pollen's one SSH key pair for deployments, made on first use under DATA_DIR/deploy/. Instances
 * that share DATA_DIR race to make it: ssh-keygen writes into a fresh name that is then renamed
 * with `link` semantics (the first wins), so every instance ends up with the same key.
 */
export async function ensureDeployKey(dataDir: string): Promise<DeployKey> {
  const dir = path.join(dataDir, 'deploy');
  const privateKeyFile = path.join(dir, 'id_ed25519');
  const existing = await readPublicKey(privateKeyFile);
  if (existing) return { privateKeyFile, publicKey: existing };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const draft = path.join(dir, `draft-${process.pid}-${Date.now()}`);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'pollen-deploy', '-f', draft]);
  try {
    // The private half first: a public file without its private key would be a broken pair.
    await link(draft, privateKeyFile);
    await link(`${draft}.pub`, `${privateKeyFile}.pub`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    await rm(draft, { force: true });
    await rm(`${draft}.pub`, { force: true });
  }
  // Another instance may be between linking its private and its public half.
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const publicKey = await readPublicKey(privateKeyFile);
    if (publicKey) return { privateKeyFile, publicKey };
    await sleep(100);
  }
  throw new Error(`${privateKeyFile}.pub is missing: remove ${privateKeyFile} to make a new deploy key`);
}

async function readPublicKey(privateKeyFile: string): Promise<string | undefined> {
  try {
    return (await readFile(`${privateKeyFile}.pub`, 'utf8')).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    return undefined;
  }
}
