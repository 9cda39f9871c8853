import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';
import { Types } from 'mongoose';
import { Field, Int, ObjectType } from 'type-graphql';
import { ProjectRecord } from '../projects/project-record.model.js';

export class AppComponents {
  @prop({ required: true })
  serverapp!: string;

  @prop({ required: true })
  clientapp!: string;
}

/** An uploaded Flower App; its archive is in GridFS, stored once per project and content hash. */
@ObjectType('FlowerApp')
@modelOptions({ schemaOptions: { collection: 'flower_apps', timestamps: { createdAt: true, updatedAt: false } } })
@index({ projectId: 1, sha256: 1 }, { unique: true })
@index({ projectId: 1, createdAt: -1 })
export class FlowerApp extends ProjectRecord {
  @Field(() => String)
  @prop({ required: true })
  name!: string;

  @Field(() => String)
  @prop({ required: true })
  version!: string;

  @Field(() => String, { nullable: true })
  @prop({ type: () => String, default: null })
  publisher!: string | null;

  @Field(() => String)
  @prop({ required: true })
  sha256!: string;

  @Field(() => Int)
  @prop({ required: true })
  sizeBytes!: number;

  /** Paths relative to the app's root (the folder holding pyproject.toml). */
  @Field(() => [String])
  @prop({ required: true, type: () => [String] })
  files!: string[];

  /** '' or the one top-level folder the app was zipped in, e.g. 'myapp/'. */
  @prop({ type: () => String, default: '' })
  rootPrefix!: string;

  @prop({ required: true, type: () => AppComponents, _id: false })
  components!: AppComponents;

  /** JSON text of [tool.flwr.app.config]: its (flattened) keys may contain dots. */
  @prop({ required: true })
  runConfigDefaultsJson!: string;

  /** The GridFS file; null once the app was deleted. */
  @prop({ type: () => Types.ObjectId, default: null })
  archiveFileId!: Types.ObjectId | null;

  /** Deleted apps keep their record, so that the jobs that ran them still say what ran. */
  @prop({ type: () => Date, default: null })
  deletedAt!: Date | null;

  @prop({ required: true, type: () => Types.ObjectId })
  uploadedById!: Types.ObjectId;

  @Field(() => Date)
  readonly createdAt!: Date;
}

export const FlowerAppModel = getModelForClass(FlowerApp);
