import type { TrainingJob } from '../../modules/training/training-job.model.js';
import type { FlowerControl } from '../flower-control.js';

/** What a federation gets from the run it serves. */
export interface RunSetup {
  job: TrainingJob;
  /** DATA_DIR/jobs/<id>: the run's own directory. */
  dir: string;
  /** A process the federation started died while the run needed it: `label` names it ("SuperNode 1"). */
  onProcessDied(label: string, command: string, code: number | null, signal: NodeJS.Signals | null): void;
  /** The federation cannot carry the run on (too few nodes left): the run is stopped and fails with `reason` (and the round). */
  cannotGoOn(reason: string): void;
  /** A line a process of the federation wrote. */
  onLine(name: string, line: string): void;
}

/**
 * The Flower federation a run is submitted to, plugged into FlowerRun: LOCAL and SIMULATION run one
 * on this host (kept warm between runs, see local-federation.ts), REMOTE uses the project's
 * long-lived SuperLink and deployed nodes.
 */
export interface Federation {
  /** The name `flwr` commands use for it (a [superlink.<name>] table in FLWR_HOME/config.toml). */
  readonly name: string;
  /** The environment of every `flwr` command against it. */
  readonly env: NodeJS.ProcessEnv;
  /** What `flwr run` needs besides the app and the federation's name (a simulation's size and resources). */
  readonly runArgs: readonly string[];
  /** Its SuperLink's Control API: a run's status, and stopping it. */
  readonly control: FlowerControl;
  /** A failed run's reason, with what the federation knows of why (REMOTE: the nodes not ONLINE). */
  explainFailure(reason: string | null): Promise<string | null>;
  /** The run failed or was stopped: stops what was started for it. */
  stop(): Promise<void>;
  /** The run completed by itself: what served it may serve the next run. */
  release(): Promise<void>;
}
