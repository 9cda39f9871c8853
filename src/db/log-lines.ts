import type { Model, Types } from 'mongoose';

/** One line of a process's output, numbered within its owner (a job, a deployment). */
export interface LogLine { seq: number; at: Date; line: string }

export interface LogLineRetention {
  /** The newest lines kept per owner. */
  kept: number;
  /** Older lines are deleted each time this many more were added. */
  trimEvery: number;
}

/**
 * Lines of output stored in order per owner, the newest `kept` of them. Each owner's lines come
 * from one writer at a time (the instance running it), which numbers them: the next number is
 * remembered here and read from the store once after a restart.
 */
export class LogLineStore<Owner extends string, L extends LogLine & Record<Owner, Types.ObjectId>> {
  private readonly nextSeq = new Map<string, number>();

  constructor(
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- any typegoose model of L
    private readonly model: Model<any>,
    private readonly owner: Owner,
    private readonly retention: LogLineRetention,
  ) {}

  /** Stores `lines` after the owner's last one and returns them as stored. */
  async append(ownerId: Types.ObjectId, lines: ReadonlyArray<{ at: Date; line: string }>): Promise<L[]> {
    if (lines.length === 0) return [];
    const key = ownerId.toHexString();
    let seq = this.nextSeq.get(key) ?? (await this.lastSeq(ownerId)) + 1;
    const docs = lines.map(({ at, line }) => ({ [this.owner]: ownerId, seq: seq++, at, line }) as unknown as L);
    this.nextSeq.set(key, seq);
    await this.model.insertMany(docs);
    const { kept, trimEvery } = this.retention;
    if (seq - 1 > kept && Math.floor((seq - 1) / trimEvery) !== Math.floor((seq - 1 - docs.length) / trimEvery)) {
      await this.model.deleteMany({ [this.owner]: ownerId, seq: { $lt: seq - kept } }).exec();
    }
    return docs;
  }

  /** The owner's last `count` lines after `afterSeq`, oldest first. */
  async last(ownerId: Types.ObjectId, count: number, afterSeq = 0): Promise<L[]> {
    const lines = await this.model.find({ [this.owner]: ownerId, seq: { $gt: afterSeq } }).sort({ seq: -1 }).limit(count).lean<L[]>().exec();
    return lines.reverse();
  }

  /** Forgets the next number of an owner that writes no more (a finished job). */
  forget(ownerId: Types.ObjectId | string): void {
    this.nextSeq.delete(typeof ownerId === 'string' ? ownerId : ownerId.toHexString());
  }

  async deleteAll(ownerIds: readonly Types.ObjectId[]): Promise<void> {
    await this.model.deleteMany({ [this.owner]: { $in: ownerIds } }).exec();
    for (const id of ownerIds) this.forget(id);
  }

  private async lastSeq(ownerId: Types.ObjectId): Promise<number> {
    const last = await this.model.findOne({ [this.owner]: ownerId }).sort({ seq: -1 }).lean<L>().exec();
    return last?.seq ?? 0;
  }
}
