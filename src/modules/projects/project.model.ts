import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';
import { Types } from 'mongoose';
import { Field, ID, ObjectType, registerEnumType } from 'type-graphql';

export enum ProjectRole {
  OWNER = 'OWNER',
  EDITOR = 'EDITOR',
  VIEWER = 'VIEWER',
}
registerEnumType(ProjectRole, { name: 'ProjectRole' });

@ObjectType()
export class ProjectMember {
  @prop({ required: true, type: () => Types.ObjectId })
  userId!: Types.ObjectId;

  @Field(() => ProjectRole)
  @prop({ required: true, enum: ProjectRole, type: () => String })
  role!: ProjectRole;
}

@ObjectType()
@modelOptions({ schemaOptions: { collection: 'projects', timestamps: true } })
@index({ 'members.userId': 1, createdAt: -1 })
@index({ name: 1 })
export class Project {
  @Field(() => ID, { name: 'id' })
  readonly _id!: Types.ObjectId;

  @Field(() => String)
  @prop({ required: true })
  name!: string;

  /** Lower-cased name, for case-insensitive search on any MongoDB-compatible server. */
  @prop({ required: true })
  nameKey!: string;

  @Field(() => String, { nullable: true })
  @prop({ type: () => String, default: null })
  description!: string | null;

  /** In the order they joined; the creator first. */
  @prop({ required: true, type: () => [ProjectMember], _id: false })
  members!: ProjectMember[];

  /** Bumped by every change to members, so that concurrent changes cannot both win. */
  @prop({ required: true, default: 0 })
  revision!: number;

  @Field(() => Date)
  readonly createdAt!: Date;
}

export const ProjectModel = getModelForClass(Project);
