import { useMutation, useQuery } from '@apollo/client/react';
import { useDeferredValue, useState, type FormEvent } from 'react';
import { ErrorText } from '../components/common';
import { fieldsOf } from '../forms';
import { formatDate } from '../format';
import { NewProjectDocument, ProjectListDocument } from '../generated/graphql';
import { href, navigate } from '../router';

export function ProjectsPage() {
  const [search, setSearch] = useState('');
  // Typing stays smooth: the list follows a step behind.
  const deferredSearch = useDeferredValue(search.trim());
  const { data, error, loading, fetchMore } = useQuery(ProjectListDocument, { variables: { search: deferredSearch || null } });
  const projects = data?.projects;

  return (
    <>
      <h1>Projects</h1>
      <CreateProject />
      <section aria-labelledby="project-list-title">
        <div className="section-head">
          <h2 id="project-list-title">Your projects{projects ? ` (${projects.totalCount})` : ''}</h2>
          <label className="inline">
            Search by name
            <input type="search" value={search} onChange={(event) => setSearch(event.target.value)} />
          </label>
        </div>
        <ErrorText error={error} />
        {projects && projects.edges.length === 0 && (
          <p className="muted">{deferredSearch ? `No project's name contains "${deferredSearch}".` : 'No projects yet: create one above.'}</p>
        )}
        <ul className="cards">
          {projects?.edges.map(({ node: project }) => (
            <li key={project.id} className="card">
              <h3><a href={href({ page: 'project', projectId: project.id, tab: 'jobs' })}>{project.name}</a></h3>
              {project.description && <p>{project.description}</p>}
              <p className="muted">
                Your role: <span className="role">{project.myRole.toLowerCase()}</span> · owner {project.owner.username} ·{' '}
                {project.trainingJobs.totalCount} run{project.trainingJobs.totalCount === 1 ? '' : 's'} · created {formatDate(project.createdAt)}
              </p>
            </li>
          ))}
        </ul>
        {projects?.pageInfo.hasNextPage && (
          <button type="button" disabled={loading} onClick={() => void fetchMore({
            variables: { after: projects.pageInfo.endCursor },
            updateQuery: (previous, { fetchMoreResult }) => ({
              projects: { ...fetchMoreResult.projects, edges: [...previous.projects.edges, ...fetchMoreResult.projects.edges] },
            }),
          })}>More projects</button>
        )}
      </section>
    </>
  );
}

function CreateProject() {
  const [create, { loading, error }] = useMutation(NewProjectDocument);
  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const { text } = fieldsOf(event.currentTarget);
    const { data } = await create({ variables: { input: { name: text('name'), description: text('description') || null } } })
      .catch(() => ({ data: undefined }));
    if (data) navigate({ page: 'project', projectId: data.createProject.id, tab: 'apps' });
  }
  return (
    <details className="panel">
      <summary>New project</summary>
      <form onSubmit={submit} className="stack">
        <label>Name<input name="name" required /></label>
        <label>Description<textarea name="description" rows={2} /></label>
        <ErrorText error={error} />
        <button type="submit" disabled={loading}>Create project</button>
      </form>
    </details>
  );
}
