import path from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import type { PubSub } from '../pubsub/pubsub.js';
import { MlflowClient } from '../modules/mlflow/mlflow.client.js';
import { MlflowMirror } from '../modules/mlflow/mlflow.mirror.js';
import { LocalFederations } from '../runner/federations/local-federation.js';
import { FlowerCli } from '../runner/flower-cli.js';
import { flowerJobLauncher } from '../runner/flower-run.js';
import { GuardedProcess } from '../runner/guarded-process.js';
import { Deployer } from '../runner/remote/deployer.js';
import { RemoteFederations } from '../runner/remote/remote-federations.js';
import { TrainingRunner } from '../runner/training-runner.js';
import type { Services } from './services.js';

export interface Workers {
  /** Ends running jobs and deployments, stops the federations and every Flower process. */
  stop(): Promise<void>;
}

const MIRROR_STOP_GRACE_MS = 5_000;

/**
 * What runs work beside the API: the training runner, and where jobs run (MAX_CONCURRENT_JOBS > 0)
 * the projects' remote federations and the deployer. An API-only instance only queues work.
 */
export async function startWorkers(config: Config, services: Services, pubsub: PubSub, logger: Logger): Promise<Workers> {
  const runnerLogger = logger.child({ component: 'runner' });
  const federations = new RemoteFederations(services.nodes,
    { python: config.flowerPython, dataDir: config.dataDir, fleetHost: config.fleetHost }, runnerLogger);
  services.nodes.attachHosting(federations);
  const deployer = config.maxConcurrentJobs > 0 ? new Deployer(services.nodes, pubsub, federations, runnerLogger) : undefined;
  if (deployer) {
    await federations.start();
    await deployer.start();
  }
  const mirror = config.mlflowTrackingUri
    ? new MlflowMirror(new MlflowClient(config.mlflowTrackingUri), services.mlflow, services, logger.child({ component: 'mlflow-mirror' }))
    : undefined;
  // Before the runner starts: it may claim a job at once.
  if (mirror) services.training.observe(mirror);
  const localFederations = new LocalFederations({
    python: config.flowerPython, dataDir: config.dataDir, simulation: config.simulation, keepWarmMs: config.warmFederationSeconds * 1000,
  }, runnerLogger);
  const flwr = new FlowerCli(config.flowerPython, path.join(config.dataDir, 'flwr-cli'), runnerLogger);
  const runner = new TrainingRunner(services.training, pubsub, flowerJobLauncher({
    training: services.training, apps: services.apps, settings: config,
    localFederations, superlinks: federations, flwr, logger: runnerLogger,
  }),
    { maxConcurrentJobs: config.maxConcurrentJobs, leaseMs: config.jobLeaseSeconds * 1000 }, runnerLogger);
  await runner.start();
  return {
    async stop() {
      await runner.stop();
      await flwr.stop();
      await localFederations.stop();
      // The jobs just stopped end their runs in MLflow too, if it answers in time.
      await mirror?.stop(MIRROR_STOP_GRACE_MS);
      await deployer?.stop();
      await federations.stop();
      await Promise.all([...GuardedProcess.running].map((child) => child.stop()));
    },
  };
}
