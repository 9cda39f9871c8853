import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MODELS } from '../src/app/services.js';

// Every query Pollen sends, with the fields it narrows on first (or sorts by), checked against the
// indexes the models declare: in MongoDB each is served by an index whose first field is one of
// them. The README's "Queries and their indexes" lists the same. A query call site that is not
// registered here fails the count below: register it, with an index that serves it.

interface Query {
  what: string;
  collection: string;
  /** The fields the query narrows on (equality or range) or sorts by; an index must start with one. */
  fields: string[];
  /** Why a query may go without an index. */
  scan?: string;
}

/** Query call sites per file (a model's find, findOne, findById, countDocuments, exists, aggregate, update*, delete*, distinct). */
const CALL_SITES: Record<string, Query[]> = {
  'src/db/loaders.ts': [{ what: 'records by id (every loader)', collection: '*', fields: ['_id'] }],
  'src/db/paging.ts': [
    { what: 'findPage: a page, newest first', collection: 'projects', fields: ['members.userId'] },
    { what: 'findPage: its totalCount', collection: 'projects', fields: ['members.userId'] },
    { what: 'findPages: count per group, then newest records of the groups', collection: 'training_jobs', fields: ['projectId'] },
  ],
  'src/db/claims.ts': [
    { what: 'take over a stale claim', collection: 'claims', fields: ['_id'] },
    { what: "release a scope's claims", collection: 'claims', fields: ['scope'] },
    { what: 'claims of these keys', collection: 'claims', fields: ['_id'] },
  ],
  'src/db/log-lines.ts': [
    { what: 'trim old lines', collection: 'job_log_lines', fields: ['jobId'] },
    { what: 'last lines after a number', collection: 'job_log_lines', fields: ['jobId'] },
    { what: "delete owners' lines", collection: 'job_log_lines', fields: ['jobId'] },
    { what: 'last line number', collection: 'job_log_lines', fields: ['jobId'] },
  ],
  'src/modules/projects/project.service.ts': [
    { what: 'update a project', collection: 'projects', fields: ['_id'] },
    { what: 'delete a project', collection: 'projects', fields: ['_id'] },
    { what: "a user's projects (account deletion)", collection: 'projects', fields: ['members.userId'] },
    { what: 'write members', collection: 'projects', fields: ['_id'] },
    { what: 'reread a project', collection: 'projects', fields: ['_id'] },
  ],
  'src/modules/users/user.service.ts': [
    { what: 'taken username', collection: 'users', fields: ['usernameKey'] },
    { what: 'user by username or email', collection: 'users', fields: ['usernameKey', 'email'] },
    { what: 'user by username', collection: 'users', fields: ['usernameKey'] },
    { what: 'delete an account', collection: 'users', fields: ['_id'] },
  ],
  'src/modules/auth/auth.service.ts': [
    { what: 'clear failures', collection: 'login_failures', fields: ['key'] },
    { what: 'refresh token by hash', collection: 'refresh_tokens', fields: ['tokenHash'] },
    { what: 'mark rotated', collection: 'refresh_tokens', fields: ['_id'] },
    { what: 'refresh token by hash (logout)', collection: 'refresh_tokens', fields: ['tokenHash'] },
    { what: "end a user's sessions", collection: 'sessions', fields: ['userId'] },
    { what: "delete a user's refresh tokens", collection: 'refresh_tokens', fields: ['userId'] },
    { what: 'clear failures (account deletion)', collection: 'login_failures', fields: ['key'] },
    { what: 'clear locks', collection: 'login_locks', fields: ['key'] },
    { what: 'end a session', collection: 'sessions', fields: ['_id'] },
    { what: 'revoke a family', collection: 'refresh_tokens', fields: ['familyId'] },
    { what: 'current lock', collection: 'login_locks', fields: ['key'] },
    { what: 'forget old failures', collection: 'login_failures', fields: ['key'] },
    { what: 'count failures', collection: 'login_failures', fields: ['key'] },
    { what: 'lock (upsert)', collection: 'login_locks', fields: ['key'] },
    { what: 'lock', collection: 'login_locks', fields: ['key'] },
    { what: 'clear failures after a lock', collection: 'login_failures', fields: ['key'] },
  ],
  'src/modules/training/training.service.ts': [
    { what: "a job's round and latest metrics", collection: 'training_jobs', fields: ['_id'] },
    { what: "a job's metrics", collection: 'round_metrics', fields: ['jobId'] },
    {
      what: 'jobs stored before latestMetricsJson', collection: 'training_jobs', fields: ['latestMetricsJson'],
      scan: 'once per start; finds nothing once the backfill has run',
    },
    { what: 'backfill one job', collection: 'training_jobs', fields: ['_id'] },
    { what: 'the queue (place in line)', collection: 'training_jobs', fields: ['status'] },
    { what: 'running jobs (runner slots)', collection: 'training_jobs', fields: ['status'] },
    { what: 'unfinished jobs of a project, app or federation', collection: 'training_jobs', fields: ['status'] },
    { what: "a project's jobs (deletion)", collection: 'training_jobs', fields: ['projectId'] },
    { what: "delete jobs' metrics", collection: 'round_metrics', fields: ['jobId'] },
    { what: "delete a project's jobs", collection: 'training_jobs', fields: ['projectId'] },
    { what: 'update a job', collection: 'training_jobs', fields: ['_id'] },
    { what: "a project's running REMOTE job", collection: 'training_jobs', fields: ['projectId', 'status'] },
    { what: "unfinished forks of a job (their checkpoints are pinned)", collection: 'training_jobs', fields: ['parentId'] },
    { what: "a job's checkpoint size, when it changed", collection: 'training_jobs', fields: ['_id'] },
    { what: "an ended fork's parent", collection: 'training_jobs', fields: ['_id'] },
    { what: "jobs' metrics as series", collection: 'round_metrics', fields: ['jobId'] },
    { what: "jobs' forks", collection: 'training_jobs', fields: ['parentId'] },
    { what: "jobs' stop-rule metric values", collection: 'round_metrics', fields: ['jobId'] },
  ],
  'src/modules/training/checkpoint.service.ts': [
    { what: 'checkpoint already stored', collection: 'checkpoints', fields: ['jobId'] },
    { what: "a job's checkpoints", collection: 'checkpoints', fields: ['jobId'] },
    { what: "jobs' checkpoints", collection: 'checkpoints', fields: ['jobId'] },
    { what: "a job's checkpoint of a round", collection: 'checkpoints', fields: ['jobId'] },
    { what: 'checkpoint by id', collection: 'checkpoints', fields: ['_id'] },
    { what: 'delete a checkpoint', collection: 'checkpoints', fields: ['_id'] },
    { what: "jobs' checkpoints (deletion)", collection: 'checkpoints', fields: ['jobId'] },
  ],
  'src/modules/mlflow/mlflow.service.ts': [
    { what: "jobs' MLflow mirrors", collection: 'mlflow_runs', fields: ['jobId'] },
    { what: "record a job's MLflow run", collection: 'mlflow_runs', fields: ['jobId'] },
    { what: "a mirror's status", collection: 'mlflow_runs', fields: ['jobId'] },
    { what: "a job's MLflow mirror", collection: 'mlflow_runs', fields: ['jobId'] },
  ],
  'src/modules/training/job.lifecycle.ts': [
    { what: 'next queued jobs, oldest first', collection: 'training_jobs', fields: ['status'] },
    { what: 'request a cancel', collection: 'training_jobs', fields: ['_id'] },
    { what: 'renew leases', collection: 'training_jobs', fields: ['_id'] },
    { what: 'cancel requests of held jobs', collection: 'training_jobs', fields: ['_id'] },
    { what: 'orphaned jobs', collection: 'training_jobs', fields: ['status'] },
    { what: 'queued jobs (stale claims)', collection: 'training_jobs', fields: ['status'] },
    { what: 'a job before a transition', collection: 'training_jobs', fields: ['_id'] },
    { what: 'transition', collection: 'training_jobs', fields: ['_id'] },
    { what: 'reread after a lost transition', collection: 'training_jobs', fields: ['_id'] },
  ],
  'src/modules/nodes/deployment.lifecycle.ts': [
    { what: 'next queued deployments', collection: 'deployments', fields: ['status'] },
    { what: 'heartbeat', collection: 'deployments', fields: ['_id'] },
    { what: 'stale running deployments', collection: 'deployments', fields: ['status'] },
    { what: 'a deployment before a transition', collection: 'deployments', fields: ['_id'] },
    { what: 'transition', collection: 'deployments', fields: ['_id'] },
    { what: 'reread after a lost transition', collection: 'deployments', fields: ['_id'] },
  ],
  'src/modules/nodes/node.service.ts': [
    { what: 'node name taken', collection: 'nodes', fields: ['projectId'] },
    { what: 'partitions taken', collection: 'nodes', fields: ['projectId'] },
    { what: 'node by id', collection: 'nodes', fields: ['_id'] },
    { what: "a project's nodes", collection: 'nodes', fields: ['projectId'] },
    { what: 'registered nodes', collection: 'nodes', fields: ['projectId'] },
    { what: 'online nodes', collection: 'nodes', fields: ['projectId'] },
    { what: 'nodes before this one on its host', collection: 'nodes', fields: ['projectId'] },
    { what: 'nodes not online', collection: 'nodes', fields: ['projectId'] },
    { what: 'nodes known to the SuperLink', collection: 'nodes', fields: ['projectId'] },
    { what: 'projects with registered nodes', collection: 'nodes', fields: ['flowerNodeId'], scan: 'at start only; one document per node host' },
    { what: "a node's active deployment", collection: 'deployments', fields: ['nodeId'] },
    { what: "a node's unfinished deployments", collection: 'deployments', fields: ['nodeId'] },
    { what: "a node's deployments (removal)", collection: 'deployments', fields: ['nodeId'] },
    { what: "delete a node's deployments", collection: 'deployments', fields: ['nodeId'] },
    { what: 'delete a node', collection: 'nodes', fields: ['_id'] },
    { what: 'a node before a change', collection: 'nodes', fields: ['_id'] },
    { what: 'change a node', collection: 'nodes', fields: ['_id'] },
    { what: "a node's last deployments", collection: 'deployments', fields: ['nodeId'] },
    { what: 'deployment by id', collection: 'deployments', fields: ['_id'] },
    { what: "a project's unfinished deployments", collection: 'deployments', fields: ['projectId', 'status'] },
    { what: "a project's deployments (deletion)", collection: 'deployments', fields: ['projectId'] },
    { what: "delete a project's deployments", collection: 'deployments', fields: ['projectId'] },
    { what: "delete a project's nodes", collection: 'nodes', fields: ['projectId'] },
  ],
  'src/modules/configs/training-config.service.ts': [
    { what: 'latest version of a name', collection: 'training_configs', fields: ['projectId'] },
    { what: "delete a project's configs", collection: 'training_configs', fields: ['projectId'] },
  ],
  'src/modules/apps/app.service.ts': [
    { what: 'same archive in the project', collection: 'flower_apps', fields: ['projectId'] },
    { what: 'restore a deleted app', collection: 'flower_apps', fields: ['_id'] },
    { what: 'same archive (after a race)', collection: 'flower_apps', fields: ['projectId'] },
    { what: 'app by id', collection: 'flower_apps', fields: ['_id'] },
    { what: 'delete an app', collection: 'flower_apps', fields: ['_id'] },
    { what: "a project's apps (deletion)", collection: 'flower_apps', fields: ['projectId'] },
    { what: "delete a project's apps", collection: 'flower_apps', fields: ['projectId'] },
  ],
};

const QUERY_CALL = /\b\w*(?:Model|model)\.(?:find|findOne|findById|countDocuments|exists|aggregate|updateOne|updateMany|deleteOne|deleteMany|findOneAndUpdate|distinct)\(/g;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name);
    return statSync(file).isDirectory() ? sourceFiles(file) : file.endsWith('.ts') ? [file] : [];
  });
}

/** The first field of each index, by collection (`_id` everywhere). */
function leadingIndexFields(): Map<string, Set<string>> {
  const byCollection = new Map<string, Set<string>>();
  for (const model of MODELS) {
    const fields = new Set(['_id', ...model.schema.indexes().map(([keys]: [Record<string, unknown>, unknown]) => Object.keys(keys)[0]!)]);
    byCollection.set(model.collection.collectionName, fields);
  }
  return byCollection;
}

describe('queries and indexes', () => {
  it('every query call site in src/ is registered here', () => {
    const found = Object.fromEntries(sourceFiles('src').flatMap((file) => {
      const count = readFileSync(file, 'utf8').match(QUERY_CALL)?.length ?? 0;
      return count > 0 ? [[file, count]] : [];
    }));
    const registered = Object.fromEntries(Object.entries(CALL_SITES).map(([file, queries]) => [file, queries.length]));
    expect(found, 'a query was added or removed: register it in CALL_SITES with the fields it narrows on').toEqual(registered);
  });

  it('every registered query is served by a declared index in MongoDB, unless it says why not', () => {
    const indexes = leadingIndexFields();
    const unserved = Object.values(CALL_SITES).flat().filter((query) => {
      const collections = query.collection === '*' ? [...indexes.keys()] : [query.collection];
      const served = collections.every((name) => query.fields.some((field) => indexes.get(name)?.has(field)));
      return !served && !query.scan;
    });
    expect(unserved).toEqual([]);
  });
});
