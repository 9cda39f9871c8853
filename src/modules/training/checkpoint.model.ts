import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';
import { Types } from 'mongoose';
import { Field, Float, Int, ObjectType, registerEnumType } from 'type-graphql';

export enum CheckpointReason {
  LATEST = 'LATEST',
  BEST = 'BEST',
  FINAL = 'FINAL',
}
registerEnumType(CheckpointReason, { name: 'CheckpointReason' });

/** The forms a checkpoint downloads in; the value is the download's `format` parameter. */
export enum CheckpointFormat {
  NPZ = 'npz',
  SAFETENSORS = 'safetensors',
}
registerEnumType(CheckpointFormat, {
  name: 'CheckpointFormat',
  valuesConfig: {
    NPZ: { description: 'numpy.load reads it; keys are the array names.' },
    SAFETENSORS: { description: 'safetensors (PyTorch and others load it); refused for dtypes it cannot hold.' },
  },
});

@ObjectType()
export class ArraySpec {
  @Field(() => String)
  @prop({ required: true })
  name!: string;

  @Field(() => [Int])
  @prop({ required: true, type: () => [Number] })
  shape!: number[];

  @Field(() => String, { description: "numpy's name, e.g. float32." })
  @prop({ required: true })
  dtype!: string;
}

/** An array as stored: besides what users see, where its raw bytes lie in the .npz (checkpoint.npz.ts). */
export class StoredArray extends ArraySpec {
  /** The .npy descr ('<f4'). */
  @prop({ required: true })
  descr!: string;

  @prop({ required: true })
  fortranOrder!: boolean;

  @prop({ required: true })
  dataOffset!: number;

  @prop({ required: true })
  byteLength!: number;
}

/**
 * A global model that Pollen saved from a run: the arrays the ServerApp held after a round, as an
 * uncompressed .npz in GridFS (bucket `checkpoints`).
 */
@ObjectType({ description: 'A global model that Pollen saved from a run: the arrays the ServerApp held after a round.' })
@modelOptions({ schemaOptions: { collection: 'checkpoints', timestamps: { createdAt: true, updatedAt: false } } })
@index({ jobId: 1, round: 1 }, { unique: true })
@index({ projectId: 1 })
export class Checkpoint {
  readonly _id!: Types.ObjectId;

  @prop({ required: true, type: () => Types.ObjectId })
  jobId!: Types.ObjectId;

  @prop({ required: true, type: () => Types.ObjectId })
  projectId!: Types.ObjectId;

  @Field(() => Int)
  @prop({ required: true })
  round!: number;

  @Field(() => Date)
  readonly createdAt!: Date;

  @Field(() => Float)
  @prop({ required: true })
  sizeBytes!: number;

  @Field(() => String, { description: "SHA-256 of the npz download's bytes." })
  @prop({ required: true })
  sha256!: string;

  @Field(() => [ArraySpec], { description: "Each array's name, shape and dtype (numpy's name, e.g. float32), in the app's own order." })
  @prop({ required: true, type: () => [StoredArray], _id: false })
  arrays!: StoredArray[];

  /** The .npz in GridFS. */
  @prop({ required: true, type: () => Types.ObjectId })
  fileId!: Types.ObjectId;
}

export const CheckpointModel = getModelForClass(Checkpoint);
