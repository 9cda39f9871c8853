import { setTimeout } from 'node:timers/promises';
import type { GraphQLError } from 'graphql';
import { Types } from 'mongoose';
import { claim, releaseClaims } from '../../db/claims.js';
import { readById } from '../../db/loaders.js';
import { badUserInput, conflict, forbidden, notFound } from '../../errors.js';
import { findPage, type Page, type PageRequest } from '../../db/paging.js';
import type { AccessWatch } from '../../graphql/live-subscribe.js';
import { normalizeText, textViolation } from '../../graphql/text.js';
import { topic, type PubSub } from '../../pubsub/pubsub.js';
import type { AppService } from '../apps/app.service.js';
import type { TrainingConfigService } from '../configs/training-config.service.js';
import type { NodeService } from '../nodes/node.service.js';
import type { TrainingService } from '../training/training.service.js';
import type { UserService } from '../users/user.service.js';
import { ProjectModel, ProjectRole, type Project, type ProjectMember } from './project.model.js';
import { roleOf } from './project.policy.js';

/** A project's members changed, or it was deleted: who may see it may have changed. */
const projectAccessChanges = topic<{ projectId: string }>('projects.access-changed');

const MAX_NAME_LENGTH = 100;
const MAX_DESCRIPTION_LENGTH = 2000;
const MEMBER_CHANGE_ATTEMPTS = 5;
const RETRY_DELAY_MS = 25;
/** A member change takes milliseconds; a claim this old was left by a process that died. */
const STALE_CLAIM_MS = 30_000;

export class ProjectService {
  constructor(
    private readonly users: UserService,
    private readonly apps: AppService,
    private readonly configs: TrainingConfigService,
    private readonly training: TrainingService,
    private readonly nodes: NodeService,
    private readonly pubsub: PubSub,
  ) {}

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
    await this.configs.deleteAllInProject(project._id);
    await this.training.deleteAllInProject(project._id);
    await releaseClaims(project._id.toHexString());
    this.pubsub.publish(projectAccessChanges, { projectId: project._id.toHexString() });
  }

  /**
   * For an account being deleted: its solo projects are deleted and it leaves the others. Refused
   * before anything changes while it is the last owner of a project that has other members, or
   * while a solo project has a job that has not finished.
   */
  async removeUserEverywhere(userId: Types.ObjectId): Promise<void> {
    const projects = await ProjectModel.find({ 'members.userId': userId }).lean<Project[]>().exec();
    const solo = projects.filter((p) => p.members.length === 1);
    const shared = projects.filter((p) => p.members.length > 1);
    const lastOwnerOf = shared.filter((p) => !p.members.some((m) => m.role === ProjectRole.OWNER && !m.userId.equals(userId)));
    if (lastOwnerOf.length > 0) {
      throw conflict(`You are the last owner of ${lastOwnerOf.map((p) => `"${p.name}"`).join(', ')}, which other members share: ` +
        'make one of them an owner, or delete the project, first.', { projectIds: lastOwnerOf.map((p) => p._id.toHexString()) });
    }
    for (const project of solo) {
      if (await this.training.hasUnfinishedJobs({ projectId: project._id })) {
        throw conflict(`Your project "${project.name}" has training jobs that have not finished: cancel them or let them finish first.`);
      }
    }
    for (const project of solo) await this.delete(project);
    for (const project of shared) await this.removeMember(project, userId);
  }

  /**
   * Watches whether `userId` may still read the projects: checked once now (a change may have
   * come between the caller's own check and this watch) and again at each change of their members.
   */
  watchAccess(userId: string, projectIds: Iterable<string>): AccessWatch {
    const watched = new Set(projectIds);
    const changes = this.pubsub.subscribe(projectAccessChanges, ({ projectId }) => watched.has(projectId));
    const stillMember = async (projectId: string) => {
      const project = await readById<Project>(ProjectModel, projectId);
      return Boolean(project && roleOf(project, userId));
    };
    const lost = (async () => {
      await changes.ready;
      for (const projectId of watched) if (!(await stillMember(projectId))) return accessLost();
      for await (const { projectId } of changes) if (!(await stillMember(projectId))) return accessLost();
      return undefined;
    })();
    return { lost, stop: () => void changes.return?.() };
  }
  get(id: string): Promise<Project | null> {
    return readById<Project>(ProjectModel, id);
  }

  list(userId: string, args: PageRequest & { search?: string | null }): Promise<Page<Project>> {
    const filter: Record<string, unknown> = { 'members.userId': new Types.ObjectId(userId) };
    const search = args.search?.trim().toLowerCase();
    if (search) filter.nameKey = { $regex: escapeRegex(search) };
    return findPage(ProjectModel, filter, args);
  }

  /** Adds a member, or changes the role of one who is already in. */
  async setMember(project: Project, username: string, role: ProjectRole): Promise<Project> {
    const user = await this.users.findByUsername(username);
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
        this.pubsub.publish(projectAccessChanges, { projectId: scope });
        return { ...current, members, revision };
      }
      await setTimeout(RETRY_DELAY_MS * (attempt + 1));
      current = await ProjectModel.findById(project._id).lean<Project>().exec();
    }
    throw conflict('The project members changed while you were changing them: try again.');
  }
}

function accessLost(): GraphQLError {
  return forbidden('You no longer have access to this project.', { reason: 'ACCESS_REVOKED' });
}

function checkedName(raw: string): string {
  const name = normalizeText(raw);
  const violation = textViolation(name, 'name', { maxLength: MAX_NAME_LENGTH });
  if (violation) throw badUserInput([violation]);
  return name;
}

function checkedDescription(raw: string | null | undefined): string | null {
  const description = normalizeText(raw ?? '');
  if (description === '') return null;
  const violation = textViolation(description, 'description', { maxLength: MAX_DESCRIPTION_LENGTH, multiline: true });
  if (violation) throw badUserInput([violation]);
  return description;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
