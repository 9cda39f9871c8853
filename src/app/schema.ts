import 'reflect-metadata';
import { DateTimeISOResolver } from 'graphql-scalars';
import { lexicographicSortSchema, printSchema, type GraphQLSchema } from 'graphql';
import { buildSchema } from 'type-graphql';
import type { PubSub } from '../pubsub/pubsub.js';
import { AppResolver, ProjectAppsResolver } from '../modules/apps/app.resolver.js';
import { AuthResolver } from '../modules/auth/auth.resolver.js';
import { ProjectConfigsResolver, TrainingConfigResolver } from '../modules/configs/training-config.resolver.js';
import { MlflowRunResolver, TrainingJobMlflowResolver } from '../modules/mlflow/mlflow.resolver.js';
import { DeploymentResolver, NodeResolver, ProjectNodesResolver } from '../modules/nodes/node.resolver.js';
import { ProjectMemberResolver, ProjectResolver } from '../modules/projects/project.resolver.js';
import { CheckpointResolver } from '../modules/training/checkpoint.resolver.js';
import { ProjectTrainingJobsResolver, RoundMetricResolver, TrainingJobResolver } from '../modules/training/training.resolver.js';
import { UserResolver } from '../modules/users/user.resolver.js';

export function buildPollenSchema(pubSub: PubSub): Promise<GraphQLSchema> {
  return buildSchema({
    pubSub,
    resolvers: [
      AuthResolver, UserResolver, ProjectResolver, ProjectMemberResolver, AppResolver, ProjectAppsResolver, TrainingConfigResolver,
      ProjectConfigsResolver,
      TrainingJobResolver, RoundMetricResolver, ProjectTrainingJobsResolver, CheckpointResolver, NodeResolver, DeploymentResolver, ProjectNodesResolver,
      TrainingJobMlflowResolver, MlflowRunResolver,
    ],
    scalarsMap: [{ type: Date, scalar: DateTimeISOResolver }],
    // Services validate input themselves, to name each field in BAD_USER_INPUT errors.
    validate: false,
  });
}

/** The text checked in as schema.graphql; sorted so that it only changes when the API does. */
export function printPollenSchema(schema: GraphQLSchema): string {
  return `${printSchema(lexicographicSortSchema(schema))}\n`;
}
