import { setTimeout } from 'node:timers/promises';
import { Types } from 'mongoose';
import { claim, releaseClaims } from '../../db/claims.js';
import { badUserInput, conflict, notFound } from '../../errors.js';
import { findPage, type Page, type PageArgs } from '../../graphql/connection.js';
import type { AppService } from '../apps/app.service.js';
import { TrainingConfigModel } from '../configs/training-config.model.js';
import type { NodeService } from '../nodes/node.service.js';
import type { TrainingService } from '../training/training.service.js';
import { UserModel } from '../users/user.model.js';
import { ProjectModel, ProjectRole, type Project, type ProjectMember } from './project.model.js';

const MAX_NAME_LENGTH = 100;
const MAX_DESCRIPTION_LENGTH = 2000;
const MEMBER_CHANGE_ATTEMPTS = 5;
const RETRY_DELAY_MS = 25;
/** A member change takes milliseconds; a claim this old was left by a process that died. */
const STALE_CLAIM_MS = 30_000;

export class ProjectService {
  constructor(private readonly apps: AppService, private readonly training: TrainingService, private readonly nodes: NodeService) {}

  async create(ownerId: string, input: { name: string; description?: string | null }): Promise<Project> {
    const name = checkedName(input.name);
    const description = checkedDescription(input.description);
    const project = await ProjectModel.create({
      name, nameKey: name.toLowerCase(), description,
      members: [{ userId: new Types.ObjectId(ownerId), role: ProjectRole.OWNER }],
    });
    return project.toObject();
  }

  async update(project: Project, input: { name?: string | null; description?: string | null }): Promise<Project> {
    const changes: Partial<Project> = {};
    if (input.name !== undefined && input.name !== null) {
      changes.name = checkedName(input.name);
      changes.nameKey = changes.name.toLowerCase();
    }
    if (input.description !== undefined) changes.description = checkedDescription(input.description);
    const updated = await ProjectModel.findOneAndUpdate({ _id: project._id }, { $set: changes }, { returnDocument: 'after' })
      .lean<Project>().exec();
    if (!updated) throw notFound('Project');
    return updated;
  }

  /** Refused while a job may still run; otherwise removes the project and everything in it. */
  async delete(project: Project): Promise<void> {
    if (await this.training.hasUnfinishedJobs({ projectId: project._id })) {
      throw conflict('This project has training jobs that have not finished: cancel them or let them finish first.');
    }
    // Its SuperNodes leave their hosts (and its SuperLink stops) before the records go.
    await this.nodes.removeAllInProject(project._id);
    await ProjectModel.deleteOne({ _id: project._id }).exec();
    await this.apps.deleteAllInProject(project._id);
    await TrainingConfigModel.deleteMany({ projectId: project._id }).exec();
    await this.training.deleteAllInProject(project._id);
    await releaseClaims(project._id.toHexString());
  }

  list(userId: string, args: PageArgs & { search?: string | null }): Promise<Page<Project>> {
    const filter: Record<string, unknown> = { 'members.userId': new Types.ObjectId(userId) };
    const search = args.search?.trim().toLowerCase();
    if (search) filter.nameKey = { $regex: escapeRegex(search) };
    return findPage(ProjectModel, filter, args);
  }

  /** Adds a member, or changes the role of one who is already in. */
  async setMember(project: Project, username: string, role: ProjectRole): Promise<Project> {
    const user = await UserModel.findOne({ usernameKey: username.trim().toLowerCase() }).lean().exec();
    if (!user) throw notFound(`User "${username}"`);
    return this.changeMembers(project, (members) =>
      members.some((m) => m.userId.equals(user._id))
        ? members.map((m) => (m.userId.equals(user._id) ? { userId: m.userId, role } : m))
        : [...members, { userId: user._id, role }]);
  }

  async removeMember(project: Project, userId: Types.ObjectId): Promise<Project> {
    return this.changeMembers(project, (members) => {
      if (!members.some((m) => m.userId.equals(userId))) throw notFound('Member');
      return members.filter((m) => !m.userId.equals(userId));
    });
  }

  /**
   * Applies a change to the member list with optimistic concurrency, so that two owners
   * demoting each other at once cannot leave a project without an owner: a change of revision N
   * is written only by whoever claims N.
   */
  private async changeMembers(project: Project, change: (members: ProjectMember[]) => ProjectMember[]): Promise<Project> {
    let current: Project | null = project;
    for (let attempt = 0; attempt < MEMBER_CHANGE_ATTEMPTS; attempt += 1) {
      if (!current) throw notFound('Project');
      const members = change(current.members);
      if (!members.some((m) => m.role === ProjectRole.OWNER)) {
        throw conflict('A project needs at least one owner: make someone else an owner first.');
      }
      const scope = current._id.toHexString();
      if (await claim(`project-members:${scope}:${current.revision}`, scope, STALE_CLAIM_MS)) {
        const revision = current.revision + 1;
        await ProjectModel.updateOne({ _id: current._id }, { $set: { members, revision } }).exec();
        return { ...current, members, revision };
      }
      await setTimeout(RETRY_DELAY_MS * (attempt + 1));
      current = await ProjectModel.findById(project._id).lean<Project>().exec();
    }
    throw conflict('The project members changed while you were changing them: try again.');
  }
}

function checkedName(name: string): string {
  const trimmed = name.trim();
  if (trimmed.length < 1 || trimmed.length > MAX_NAME_LENGTH) {
    throw badUserInput([{ field: 'name', message: `must be 1 to ${MAX_NAME_LENGTH} characters` }]);
  }
  return trimmed;
}

function checkedDescription(description: string | null | undefined): string | null {
  if (description === undefined || description === null || description.trim() === '') return null;
  if (description.length > MAX_DESCRIPTION_LENGTH) {
    throw badUserInput([{ field: 'description', message: `must be at most ${MAX_DESCRIPTION_LENGTH} characters` }]);
  }
  return description.trim();
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
