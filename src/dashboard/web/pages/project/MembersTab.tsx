import { useMutation } from '@apollo/client/react';
import type { FormEvent } from 'react';
import { ErrorText } from '../../components/common';
import { fieldsOf } from '../../forms';
import { DropMemberDocument, SetMemberDocument, type ProjectHeaderQuery, type ProjectRole } from '../../generated/graphql';
import { canManage } from '../../roles';

const ROLES: readonly ProjectRole[] = ['VIEWER', 'EDITOR', 'OWNER'];
const ROLE_HELP = 'Viewers read; editors also upload apps, save configs and start runs; owners also manage members.';

export function MembersTab({ project }: { project: NonNullable<ProjectHeaderQuery['project']> }) {
  const [setMember, setting] = useMutation(SetMemberDocument);
  const [dropMember, dropping] = useMutation(DropMemberDocument);
  const manager = canManage(project.myRole);

  async function invite(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const { text } = fieldsOf(formElement);
    const result = await setMember({ variables: {
      projectId: project.id, username: text('username'), role: text('role') as ProjectRole,
    } }).catch(() => undefined);
    if (result?.data) formElement.reset();
  }

  return (
    <>
      {manager && (
        <form className="panel row-form" onSubmit={invite} aria-labelledby="invite-title">
          <h2 id="invite-title">Add a member</h2>
          <label>Username<input name="username" required /></label>
          <label>Role
            <select name="role" defaultValue="VIEWER" aria-describedby="role-help">
              {ROLES.map((role) => <option key={role} value={role}>{role.toLowerCase()}</option>)}
            </select>
          </label>
          <button type="submit" disabled={setting.loading}>Add member</button>
          <p id="role-help" className="hint">{ROLE_HELP}</p>
        </form>
      )}
      <h2>Members ({project.members.length})</h2>
      <ErrorText error={setting.error ?? dropping.error} />
      <table className="members">
        <thead><tr><th scope="col">Member</th><th scope="col">Role</th>{manager && <th scope="col">Remove</th>}</tr></thead>
        <tbody>
          {project.members.map(({ user, role }) => (
            <tr key={user.id}>
              <th scope="row">{user.username}</th>
              <td>
                {manager ? (
                  <select value={role} aria-label={`Role of ${user.username}`} onChange={(event) => void setMember({ variables: {
                    projectId: project.id, username: user.username, role: event.target.value as ProjectRole,
                  } }).catch(() => undefined)}>
                    {ROLES.map((option) => <option key={option} value={option}>{option.toLowerCase()}</option>)}
                  </select>
                ) : role.toLowerCase()}
              </td>
              {manager && (
                <td>
                  <button type="button" className="danger" disabled={dropping.loading} onClick={() => {
                    if (confirm(`Remove ${user.username} from ${project.name}?`)) {
                      void dropMember({ variables: { projectId: project.id, userId: user.id } }).catch(() => undefined);
                    }
                  }}>Remove {user.username}</button>
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
