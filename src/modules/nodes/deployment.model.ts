import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';
import { Types } from 'mongoose';
import { Field, ObjectType, registerEnumType } from 'type-graphql';
import { ProjectRecord } from '../projects/project-record.model.js';

export enum DeploymentStatus {
  QUEUED = 'QUEUED',
  RUNNING = 'RUNNING',
  SUCCEEDED = 'SUCCEEDED',
  FAILED = 'FAILED',
}
registerEnumType(DeploymentStatus, { name: 'DeploymentStatus' });

export function deploymentFinished(status: DeploymentStatus): boolean {
  return status === DeploymentStatus.SUCCEEDED || status === DeploymentStatus.FAILED;
}

/** One run of the deploy playbook against a node's host (the original design's `ansible_jobs`). */
@ObjectType()
@modelOptions({ schemaOptions: { collection: 'deployments', timestamps: true } })
@index({ nodeId: 1, createdAt: -1 })
@index({ status: 1, createdAt: 1 })
@index({ projectId: 1 }) // project deletion removes its deployments
export class Deployment extends ProjectRecord {
  @prop({ required: true, type: () => Types.ObjectId })
  nodeId!: Types.ObjectId;

  @Field(() => DeploymentStatus)
  @prop({ required: true, enum: DeploymentStatus, type: () => String })
  status!: DeploymentStatus;

  @Field(() => String, { nullable: true, description: 'The Ansible task that failed, when one did.' })
  @prop({ type: () => String, default: null })
  failedTask!: string | null;

  @Field(() => String, { nullable: true, description: "Why it failed: the failing task's message, or what went wrong around Ansible." })
  @prop({ type: () => String, default: null })
  failureReason!: string | null;

  @prop({ required: true, type: () => Types.ObjectId })
  createdById!: Types.ObjectId;

  @Field(() => Date)
  readonly createdAt!: Date;

  readonly updatedAt!: Date;

  @Field(() => Date, { nullable: true })
  @prop({ type: () => Date, default: null })
  finishedAt!: Date | null;
}

export const DeploymentModel = getModelForClass(Deployment);

/** One line of Ansible's output for a deployment. */
@modelOptions({ schemaOptions: { collection: 'deployment_log_lines' } })
@index({ deploymentId: 1, seq: 1 }, { unique: true })
export class DeploymentLogLine {
  @prop({ required: true, type: () => Types.ObjectId })
  deploymentId!: Types.ObjectId;

  @prop({ required: true })
  seq!: number;

  @prop({ required: true })
  at!: Date;

  @prop({ type: () => String, default: '' })
  line!: string;
}

export const DeploymentLogLineModel = getModelForClass(DeploymentLogLine);
