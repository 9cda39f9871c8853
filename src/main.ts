import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { startPollen, type RunningPollen } from './app/server.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    process.exit(2);
  }
  const logger = createLogger(config.logLevel);

  let pollen: RunningPollen | undefined;
  const stopAndExit = async (code: number) => {
    try {
      await pollen?.stop();
    } finally {
      process.exit(code);
    }
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      logger.info({ signal }, 'signal received');
      void stopAndExit(0);
    });
  }
  process.on('uncaughtException', (error) => {
    logger.fatal({ err: error }, 'uncaught exception');
    void stopAndExit(1);
  });
  process.on('unhandledRejection', (reason) => {
    logger.fatal({ err: reason }, 'unhandled rejection');
    void stopAndExit(1);
  });

  pollen = await startPollen(config, logger);
  logger.info({ url: pollen.url, embeddedDatabasePid: pollen.database.embedded?.pid }, 'listening');
  console.log(`Pollen ready at ${pollen.url}`);
}

main().catch((error) => {
  console.error('Pollen failed to start:', error instanceof Error ? error.message : error);
  process.exit(1);
});
