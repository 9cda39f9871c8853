import type DataLoader from 'dataloader';
import { byIdLoader } from '../db/loaders.js';
import type { Logger } from '../logger.js';
import type { Viewer } from '../modules/auth/token.service.js';
import { FlowerAppModel, type FlowerApp } from '../modules/apps/flower-app.model.js';
import { TrainingConfigModel, type TrainingConfig } from '../modules/configs/training-config.model.js';
import { NodeModel, type Node } from '../modules/nodes/node.model.js';
import { ProjectModel, type Project } from '../modules/projects/project.model.js';
import { TrainingJobModel, type TrainingJob } from '../modules/training/training-job.model.js';
import { UserModel, type User } from '../modules/users/user.model.js';
import type { Services } from '../services.js';

/** One batched loader per relation a resolver follows; they live for one operation. */
export interface Loaders {
  user: DataLoader<string, User | null>;
  project: DataLoader<string, Project | null>;
  app: DataLoader<string, FlowerApp | null>;
  config: DataLoader<string, TrainingConfig | null>;
  job: DataLoader<string, TrainingJob | null>;
  node: DataLoader<string, Node | null>;
}

/** What every resolver receives, on HTTP and graphql-ws alike. */
export interface Context {
  requestId: string;
  logger: Logger;
  viewer: Viewer | undefined;
  services: Services;
  loaders: Loaders;
}

export function createContext(base: Omit<Context, 'loaders'>): Context {
  return {
    ...base,
    loaders: {
      user: byIdLoader<User>(UserModel),
      project: byIdLoader<Project>(ProjectModel),
      app: byIdLoader<FlowerApp>(FlowerAppModel),
      config: byIdLoader<TrainingConfig>(TrainingConfigModel),
      job: byIdLoader<TrainingJob>(TrainingJobModel),
      node: byIdLoader<Node>(NodeModel),
    },
  };
}
