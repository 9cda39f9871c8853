import { forbidden, notFound, unauthenticated } from '../../errors.js';
import { parseId } from '../../graphql/ids.js';
import type { Viewer } from '../auth/token.service.js';
import { ProjectRole, type Project } from './project.model.js';

/** Everything a member may do in a project, and the least role that may do it. This is the only place. */
const REQUIRED_ROLE = {
  read: ProjectRole.VIEWER,
  uploadApp: ProjectRole.EDITOR,
  deleteApp: ProjectRole.EDITOR,
  createConfig: ProjectRole.EDITOR,
  startTraining: ProjectRole.EDITOR,
  cancelTraining: ProjectRole.EDITOR,
  manageNodes: ProjectRole.EDITOR,
  updateProject: ProjectRole.OWNER,
  deleteProject: ProjectRole.OWNER,
  manageMembers: ProjectRole.OWNER,
} as const satisfies Record<string, ProjectRole>;

export type ProjectAction = keyof typeof REQUIRED_ROLE;

const RANK: Record<ProjectRole, number> = { VIEWER: 1, EDITOR: 2, OWNER: 3 };

export function allows(role: ProjectRole, action: ProjectAction): boolean {
  return RANK[role] >= RANK[REQUIRED_ROLE[action]];
}

export function roleOf(project: Project, userId: string): ProjectRole | undefined {
  return project.members.find((m) => m.userId.toHexString() === userId)?.role;
}

/** Who asks (an operation's context): the viewer, a way to read projects, and where to note the projects it was let into. */
export interface Caller {
  viewer: Viewer | undefined;
  loaders: { project: { load(id: string): Promise<Project | null> } };
  authorizedProjects?: Set<string>;
}
export interface AuthorizedProject { project: Project; role: ProjectRole; userId: string }

export function requireViewer(caller: { viewer: Viewer | undefined }): Viewer {
  if (!caller.viewer) throw unauthenticated();
  return caller.viewer;
}

/**
 * Resolves a project for a caller who wants to do `action` in it. Outsiders learn nothing:
 * a project they are not in is NOT_FOUND (named `what`, for things inside it); a member whose
 * role is too low is FORBIDDEN.
 */
export async function authorizeProject(
  caller: Caller,
  projectId: string,
  action: ProjectAction,
  what = 'Project',
): Promise<AuthorizedProject> {
  const viewer = requireViewer(caller);
  const project = await caller.loaders.project.load(parseId(projectId, 'projectId').toHexString());
  const role = project ? roleOf(project, viewer.userId) : undefined;
  if (!project || !role) throw notFound(what);
  if (!allows(role, action)) {
    throw forbidden(`Your role in this project is ${role}; this needs ${REQUIRED_ROLE[action]} or higher.`);
  }
  caller.authorizedProjects?.add(project._id.toHexString());
  return { project, role, userId: viewer.userId };
}

/** The same rule for a record that belongs to a project (an app, a config, a job). */
export async function authorizeInProject<T extends { projectId: { toHexString(): string } }>(
  caller: Caller,
  load: (id: string) => Promise<T | null>,
  id: string,
  action: ProjectAction,
  what: string,
): Promise<{ record: T; access: AuthorizedProject }> {
  requireViewer(caller);
  const record = await load(parseId(id, 'id').toHexString());
  if (!record) throw notFound(what);
  return { record, access: await authorizeProject(caller, record.projectId.toHexString(), action, what) };
}
