import { spawn } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The playbooks that ship with Pollen. */
export const PLAYBOOKS = {
  deploy: fileURLToPath(new URL('../../../src/runner/ansible/deploy-supernode.yml', import.meta.url)),
  remove: fileURLToPath(new URL('../../../src/runner/ansible/remove-supernode.yml', import.meta.url)),
};

export interface SshTarget { host: string; sshUser: string; sshPort: number }

export interface PlaybookRun {
  python: string;
  playbook: string;
  target: SshTarget;
  privateKeyFile: string;
  knownHostsFile: string;
  /** Extra variables, passed as a JSON file (never on the command line, never logged). */
  vars: Record<string, unknown>;
  /** A private scratch directory for this run (inventory, variables, Ansible's temp files). */
  workDir: string;
  onLine: (line: string) => void;
  timeoutMs: number;
  /** Stops the playbook (Pollen shutting down). */
  signal?: AbortSignal;
}

export interface PlaybookResult {
  ok: boolean;
  /** The task Ansible was running when a host failed or was unreachable. */
  failedTask: string | null;
  /** Ansible's one-line account of the failure. */
  failure: string | null;
}

const TASK_HEADER = /^(?:TASK|RUNNING HANDLER) \[(.+?)\] \**$/;
const FAILURE = /^(?:fatal|failed): \[[^\]]+\]:? (?:\(item=.*?\) )?(?:=> )?(FAILED!|UNREACHABLE!)(?: => )?(.*)$/;
const MAX_FAILURE_CHARS = 500;

/**
 * Runs ansible-playbook against one host with Pollen's deploy key. Host keys are trusted on
 * first use and then pinned in `knownHostsFile`, so a host that changes its key is refused.
 */
export async function runPlaybook(options: PlaybookRun): Promise<PlaybookResult> {
  const env = await ansibleEnvironment(path.dirname(options.python), options.workDir);
  const inventory = path.join(options.workDir, 'inventory.json');
  const varsFile = path.join(options.workDir, 'vars.json');
  await writeFile(inventory, JSON.stringify({
    all: { hosts: { node: inventoryHost(options.target, options.privateKeyFile, options.knownHostsFile) } },
  }), { mode: 0o600 });
  await writeFile(varsFile, JSON.stringify(options.vars), { mode: 0o600 });
  const child = spawn(path.join(path.dirname(options.python), 'ansible-playbook'), ['-i', inventory, '-e', `@${varsFile}`, options.playbook], {
    cwd: options.workDir, env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let currentTask: string | null = null;
  let failedTask: string | null = null;
  let failure: string | null = null;
  const read = (line: string) => {
    const task = TASK_HEADER.exec(line);
    if (task) currentTask = task[1]!;
    const failed = FAILURE.exec(line);
    if (failed && failedTask === null) {
      failedTask = currentTask;
      failure = `${failed[1]} ${summarize(failed[2] ?? '')}`.trim().slice(0, MAX_FAILURE_CHARS);
    }
    options.onLine(line);
  };
  createInterface({ input: child.stdout! }).on('line', read);
  createInterface({ input: child.stderr! }).on('line', read);
  const timer = setTimeout(() => child.kill('SIGTERM'), options.timeoutMs);
  const abort = () => child.kill('SIGTERM');
  options.signal?.addEventListener('abort', abort, { once: true });
  const code = await new Promise<number | null>((resolve) => {
    child.once('error', (error) => {
      read(`could not run ansible-playbook: ${error.message}`);
      resolve(null);
    });
    child.once('close', (exitCode) => resolve(exitCode));
  });
  clearTimeout(timer);
  options.signal?.removeEventListener('abort', abort);
  await rm(varsFile, { force: true });
  if (code === 0) return { ok: true, failedTask: null, failure: null };
  if (!failure) {
    failure = options.signal?.aborted ? 'Pollen shut down during the deployment'
      : code === null ? `ansible-playbook was stopped after ${options.timeoutMs / 1000} s` : `ansible-playbook exited with code ${code}`;
  }
  return { ok: false, failedTask, failure };
}

/**
 * The environment of an Ansible run that keeps everything in `workDir`, with the Ansible of `bin`
 * (the venv's bin/): an empty ansible.cfg there, since Ansible falls back to ./ansible.cfg,
 * ~/.ansible.cfg and /etc/ansible for a missing one, and its home and temp files there.
 */
export async function ansibleEnvironment(bin: string, workDir: string): Promise<NodeJS.ProcessEnv> {
  await mkdir(path.join(workDir, 'tmp'), { recursive: true, mode: 0o700 });
  await writeFile(path.join(workDir, 'ansible.cfg'), '');
  return {
    ...process.env,
    PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}`,
    // Nothing from an ansible.cfg or ~/.ansible of this host changes what Pollen runs.
    ANSIBLE_CONFIG: path.join(workDir, 'ansible.cfg'),
    ANSIBLE_LOCAL_TEMP: path.join(workDir, 'tmp'),
    ANSIBLE_HOME: path.join(workDir, 'ansible-home'),
    ANSIBLE_HOST_KEY_CHECKING: 'True',
    ANSIBLE_PIPELINING: 'True',
    // No SSH master process outlives the run.
    ANSIBLE_SSH_ARGS: '-o ControlMaster=no -o ControlPersist=no',
    ANSIBLE_NOCOLOR: '1',
    ANSIBLE_FORCE_COLOR: '0',
    ANSIBLE_RETRY_FILES_ENABLED: '0',
    // A non-interactive SSH session may put another python3 first on PATH.
    ANSIBLE_PYTHON_INTERPRETER: '/usr/bin/python3',
    ANSIBLE_STDOUT_CALLBACK: 'default',
    ANSIBLE_DISPLAY_SKIPPED_HOSTS: '0',
    PYTHONUNBUFFERED: '1',
  };
}

/**
 * One host's inventory entry: logged into with `privateKeyFile` only, its host key trusted on first
 * use and then pinned in `knownHostsFile`, so a host that changes its key is refused.
 */
export function inventoryHost(target: SshTarget, privateKeyFile: string, knownHostsFile: string): Record<string, unknown> {
  return {
    ansible_host: target.host,
    ansible_port: target.sshPort,
    ansible_user: target.sshUser,
    ansible_ssh_private_key_file: privateKeyFile,
    // -F /dev/null and IdentitiesOnly keep this host's ~/.ssh/config and agent keys out of it.
    ansible_ssh_common_args: `-F /dev/null -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=${knownHostsFile} ` +
      '-o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=10',
  };
}

/** Ansible prints a JSON result after `=>`; its `msg` says what went wrong. */
function summarize(result: string): string {
  try {
    const parsed = JSON.parse(result) as { msg?: unknown; stderr?: unknown };
    const parts = [parsed.msg, parsed.stderr].filter((part): part is string => typeof part === 'string' && part.trim() !== '');
    if (parts.length > 0) return parts.join(': ').replace(/\s+/g, ' ');
  } catch {
    // Not JSON on one line: keep it as it is.
  }
  return result.replace(/\s+/g, ' ');
}
