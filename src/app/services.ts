import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import { ClaimModel } from '../db/claims.js';
import { DEFAULT_ARCHIVE_LIMITS } from '../modules/apps/app-archive.js';
import { AppService } from '../modules/apps/app.service.js';
import { FlowerAppModel } from '../modules/apps/flower-app.model.js';
import { AuthService } from '../modules/auth/auth.service.js';
import { LoginFailureModel } from '../modules/auth/login-failure.model.js';
import { LoginLockModel } from '../modules/auth/login-lock.model.js';
import { RefreshTokenModel } from '../modules/auth/refresh-token.model.js';
import { SessionModel } from '../modules/auth/session.model.js';
import { SignInLimiter } from '../modules/auth/sign-in.limiter.js';
import { TokenService } from '../modules/auth/token.service.js';
import { TrainingConfigModel } from '../modules/configs/training-config.model.js';
import { TrainingConfigService } from '../modules/configs/training-config.service.js';
import { MlflowRunModel } from '../modules/mlflow/mlflow-run.model.js';
import { MlflowService } from '../modules/mlflow/mlflow.service.js';
import { DeploymentLogLineModel, DeploymentModel } from '../modules/nodes/deployment.model.js';
import { NodeModel } from '../modules/nodes/node.model.js';
import { NodeService } from '../modules/nodes/node.service.js';
import { ProjectModel } from '../modules/projects/project.model.js';
import { ProjectService } from '../modules/projects/project.service.js';
import { CheckpointModel } from '../modules/training/checkpoint.model.js';
import { JobLogLineModel } from '../modules/training/job-log-line.model.js';
import { RoundMetricModel } from '../modules/training/round-metric.model.js';
import { FederationKind, TrainingJobModel } from '../modules/training/training-job.model.js';
import { TrainingService } from '../modules/training/training.service.js';
import type { PubSub } from '../pubsub/pubsub.js';
import { UserModel } from '../modules/users/user.model.js';
import { UserService } from '../modules/users/user.service.js';

/** The services a process shares; one instance of each. */
export interface Services {
  users: UserService;
  tokens: TokenService;
  auth: AuthService;
  projects: ProjectService;
  apps: AppService;
  configs: TrainingConfigService;
  training: TrainingService;
  nodes: NodeService;
  mlflow: MlflowService;
  pubsub: PubSub;
}

export function createServices(config: Config, pubsub: PubSub, logger: Logger): Services {
  const users = new UserService();
  const tokens = new TokenService(config.jwtSecret, config.accessTokenTtlSeconds);
  const nodes: NodeService = new NodeService(pubsub,
    (projectId) => training.hasUnfinishedJobs({ projectId, federation: FederationKind.REMOTE }));
  const training = new TrainingService(pubsub, nodes, config, logger);
  const apps = new AppService({ ...DEFAULT_ARCHIVE_LIMITS, maxBytes: config.maxUploadBytes }, training);
  const configs = new TrainingConfigService();
  const projects = new ProjectService(users, apps, configs, training, nodes, pubsub);
  return {
    users,
    tokens,
    auth: new AuthService(users, projects, tokens, new SignInLimiter(config.signInRateLimit), pubsub, config.refreshTokenTtlSeconds),
    projects,
    apps,
    configs,
    training,
    nodes,
    mlflow: new MlflowService(config.mlflowTrackingUri),
    pubsub,
  };
}

/** Every model whose indexes are created at start. */
export const MODELS = [
  ClaimModel, UserModel, SessionModel, RefreshTokenModel, LoginFailureModel, LoginLockModel, ProjectModel, FlowerAppModel, TrainingConfigModel,
  TrainingJobModel, RoundMetricModel, JobLogLineModel, CheckpointModel, NodeModel, DeploymentModel, DeploymentLogLineModel, MlflowRunModel,
];
