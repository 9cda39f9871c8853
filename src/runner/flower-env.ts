import path from 'node:path';

/** The environment of every Flower process and `flwr` command Pollen runs. */
export function flowerEnv(python: string, flwrHome: string): NodeJS.ProcessEnv {
  const bin = path.dirname(python);
  return {
    ...process.env,
    // Flower calls home unless told not to; these machines (and many users') are offline.
    FLWR_TELEMETRY_ENABLED: '0',
    FLWR_DISABLE_UPDATE_CHECK: '1',
    FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION: '1',
    FLWR_HOME: flwrHome,
    // How often a SuperExec looks for an app process to start (the ServerApp, each ClientApp): 1 s
    // by default, a delay every round pays twice.
    FLWR_SUPEREXEC_TASK_POLL_INTERVAL: '0.1',
    // The SuperLink and SuperNodes start flower-superexec and flwr-*app by name.
    PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}`,
    PYTHONUNBUFFERED: '1',
  };
}
