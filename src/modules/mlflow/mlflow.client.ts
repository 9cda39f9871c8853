import { Readable } from 'node:stream';

/** MLflow refused or did not answer; `retryable` when trying again later may work. */
export class MlflowError extends Error {
  constructor(message: string, readonly retryable: boolean, readonly code?: string) {
    super(message);
    this.name = 'MlflowError';
  }
}

export interface MlflowRunInfo { runId: string; experimentId: string; artifactUri: string }
export interface KeyValue { key: string; value: string }
export interface MlflowMetric { key: string; value: number; timestamp: number; step: number }
export type MlflowRunStatus = 'RUNNING' | 'FINISHED' | 'FAILED' | 'KILLED';

// How long one call may take; a slow MLflow fails the call (retried later), never the job.
const CALL_TIMEOUT_MS = 10_000;
const ARTIFACT_TIMEOUT_MS = 10 * 60_000;
const ARTIFACT_SCHEME = 'mlflow-artifacts:';

/** The few calls of MLflow's REST API (2.0) that mirroring a job needs. */
export class MlflowClient {
  constructor(readonly trackingUri: string) {}

  /** The id of the experiment of that name, created when there is none. */
  async experimentId(name: string): Promise<string> {
    const byName = () => this.call<{ experiment: { experiment_id: string } }>('GET',
      `experiments/get-by-name?experiment_name=${encodeURIComponent(name)}`);
    try {
      return (await byName()).experiment.experiment_id;
    } catch (error) {
      if ((error as MlflowError).code !== 'RESOURCE_DOES_NOT_EXIST') throw error;
    }
    try {
      return (await this.call<{ experiment_id: string }>('POST', 'experiments/create', { name })).experiment_id;
    } catch (error) {
      // Created meanwhile, by another Pollen instance.
      if ((error as MlflowError).code === 'RESOURCE_ALREADY_EXISTS') return (await byName()).experiment.experiment_id;
      throw error;
    }
  }

  async createRun(experimentId: string, runName: string, startTime: number, tags: KeyValue[]): Promise<MlflowRunInfo> {
    const { run } = await this.call<{ run: { info: { run_id: string; artifact_uri: string } } }>('POST', 'runs/create', {
      experiment_id: experimentId, run_name: runName, start_time: startTime, tags,
    });
    return { runId: run.info.run_id, experimentId, artifactUri: run.info.artifact_uri };
  }

  /** At most 1,000 metrics, 100 params and 100 tags per call (MLflow's limits). */
  async logBatch(runId: string, batch: { metrics?: MlflowMetric[]; params?: KeyValue[]; tags?: KeyValue[] }): Promise<void> {
    await this.call('POST', 'runs/log-batch', { run_id: runId, metrics: [], params: [], tags: [], ...batch });
  }

  async endRun(runId: string, status: MlflowRunStatus, endTime: number): Promise<void> {
    await this.call('POST', 'runs/update', { run_id: runId, status, end_time: endTime });
  }

  /**
   * Uploads a file under the run's artifacts through the server's artifact proxy (`mlflow server`
   * serves artifacts by default). `open` is called for each attempt.
   */
  async uploadArtifact(artifactUri: string, path: string, open: () => Readable): Promise<void> {
    if (!artifactUri.startsWith(ARTIFACT_SCHEME)) {
      throw new MlflowError(`the run's artifacts live at ${artifactUri}, where Pollen cannot write: run mlflow server with --serve-artifacts`, false);
    }
    const location = artifactUri.slice(ARTIFACT_SCHEME.length).replace(/^\/\/[^/]*/, '').replace(/^\/+/, '');
    const target = `${this.trackingUri}/api/2.0/mlflow-artifacts/artifacts/${location}/${path.split('/').map(encodeURIComponent).join('/')}`;
    const body = Readable.toWeb(open()) as ReadableStream<Uint8Array>;
    await this.send(target, { method: 'PUT', body, duplex: 'half', headers: { 'content-type': 'application/octet-stream' } }, ARTIFACT_TIMEOUT_MS);
  }

  private async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const init = body === undefined ? { method } : { method, body: JSON.stringify(body), headers: { 'content-type': 'application/json' } };
    return (await this.send(`${this.trackingUri}/api/2.0/mlflow/${path}`, init, CALL_TIMEOUT_MS)).json() as Promise<T>;
  }

  private async send(url: string, init: RequestInit & { duplex?: 'half' }, timeoutMs: number): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      const why = (error as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000} s` : cause?.code ?? cause?.message ?? String(error);
      throw new MlflowError(`MLflow at ${this.trackingUri} cannot be reached (${why})`, true);
    }
    if (response.ok) return response;
    const text = await response.text().catch(() => '');
    let answer: { error_code?: string; message?: string } = {};
    try {
      answer = JSON.parse(text) as typeof answer;
    } catch {
      // Not MLflow's JSON error (a proxy's page): the status says enough.
    }
    const retryable = response.status === 429 || response.status >= 500;
    throw new MlflowError(`MLflow answered ${response.status}${answer.message ? `: ${answer.message}` : ''}`, retryable, answer.error_code);
  }
}
