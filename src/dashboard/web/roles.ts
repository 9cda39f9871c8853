import type { ProjectRole } from './generated/graphql';

// What each role may do is Pollen's to decide (src/modules/projects/project.policy.ts); the
// dashboard only leaves out what the role would be refused, so a VIEWER is not offered an edit.
const RANK: Record<ProjectRole, number> = { VIEWER: 1, EDITOR: 2, OWNER: 3 };

/** Upload and delete apps, save configs, start and cancel runs, manage nodes. */
export function canEdit(role: ProjectRole): boolean {
  return RANK[role] >= RANK.EDITOR;
}

/** Manage members (and rename or delete the project). */
export function canManage(role: ProjectRole): boolean {
  return role === 'OWNER';
}
