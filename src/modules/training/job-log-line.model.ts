import { getModelForClass, index, modelOptions, prop } from '@typegoose/typegoose';
import { Types } from 'mongoose';

/** One line of a job's ServerApp output, ANSI codes stripped; the last lines per job are kept. */
@modelOptions({ schemaOptions: { collection: 'job_log_lines' } })
@index({ jobId: 1, seq: -1 })
export class JobLogLine {
  @prop({ required: true, type: () => Types.ObjectId })
  jobId!: Types.ObjectId;

  /** Order within the job. */
  @prop({ required: true })
  seq!: number;

  @prop({ required: true })
  at!: Date;

  /** May be empty: blank lines are part of the output. */
  @prop({ type: () => String, default: '' })
  line!: string;
}

export const JobLogLineModel = getModelForClass(JobLogLine);
