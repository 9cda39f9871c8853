import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';
import { Field, Int, ObjectType, registerEnumType } from 'type-graphql';
import { ProjectRecord } from '../projects/project-record.model.js';

export enum NodeStatus {
  REGISTERED = 'REGISTERED',
  DEPLOYING = 'DEPLOYING',
  ONLINE = 'ONLINE',
  OFFLINE = 'OFFLINE',
  FAILED = 'FAILED',
}
registerEnumType(NodeStatus, { name: 'NodeStatus' });

/** A host that runs one SuperNode of its project's REMOTE federation, deployed over SSH. */
@ObjectType()
@modelOptions({ schemaOptions: { collection: 'nodes', timestamps: true } })
@index({ projectId: 1, nameKey: 1 }, { unique: true })
@index({ projectId: 1, partitionId: 1 }, { unique: true })
export class Node extends ProjectRecord {
  @Field(() => String)
  @prop({ required: true })
  name!: string;

  /** Lower-cased name: names are unique per project in any case. */
  @prop({ required: true })
  nameKey!: string;

  @Field(() => String, { description: 'The address Ansible reaches over SSH.' })
  @prop({ required: true })
  host!: string;

  @Field(() => String)
  @prop({ required: true })
  sshUser!: string;

  @Field(() => Int)
  @prop({ required: true })
  sshPort!: number;

  @Field(() => NodeStatus)
  @prop({ required: true, enum: NodeStatus, type: () => String })
  status!: NodeStatus;

  @Field(() => Date, { nullable: true, description: "The SuperLink's last word from this node's SuperNode." })
  @prop({ type: () => Date, default: null })
  lastSeenAt!: Date | null;

  /** The node's data partition (`partition-id` in its node-config); the first free one at registration. */
  @prop({ required: true })
  partitionId!: number;

  /** The id the SuperLink gave this node's public key when it was registered there. */
  @prop({ type: () => String, default: null })
  flowerNodeId!: string | null;

  @Field(() => Date)
  readonly createdAt!: Date;

  readonly updatedAt!: Date;
}

export const NodeModel = getModelForClass(Node);
