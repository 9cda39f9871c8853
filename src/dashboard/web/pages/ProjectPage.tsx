import { useQuery } from '@apollo/client/react';
import { ErrorText } from '../components/common';
import { ProjectHeaderDocument } from '../generated/graphql';
import { href, PROJECT_TABS, type ProjectTab } from '../router';
import { AppsTab } from './project/AppsTab';
import { ConfigsTab } from './project/ConfigsTab';
import { JobsTab } from './project/JobsTab';
import { MembersTab } from './project/MembersTab';
import { NodesTab } from './project/NodesTab';

const TAB_TITLES: Record<ProjectTab, string> = { jobs: 'Runs', apps: 'Apps', configs: 'Configs', nodes: 'Nodes', members: 'Members' };

export function ProjectPage({ projectId, tab }: { projectId: string; tab: ProjectTab }) {
  const { data, error } = useQuery(ProjectHeaderDocument, { variables: { id: projectId } });
  const project = data?.project;
  if (error) return <ErrorText error={error} />;
  if (!project) return <p className="muted">Loading the project…</p>;
  return (
    <>
      <p className="crumbs"><a href={href({ page: 'projects' })}>Projects</a> /</p>
      <h1>{project.name}</h1>
      {project.description && <p>{project.description}</p>}
      <p className="muted">Your role: <span className="role">{project.myRole.toLowerCase()}</span></p>
      <nav className="tabs" aria-label="Project">
        {PROJECT_TABS.map((name) => (
          <a key={name} href={href({ page: 'project', projectId, tab: name })} aria-current={name === tab ? 'page' : undefined}>
            {TAB_TITLES[name]}
          </a>
        ))}
      </nav>
      <section aria-label={TAB_TITLES[tab]} className="tab-panel">
        {tab === 'jobs' && <JobsTab projectId={projectId} />}
        {tab === 'apps' && <AppsTab projectId={projectId} />}
        {tab === 'configs' && <ConfigsTab projectId={projectId} />}
        {tab === 'nodes' && <NodesTab projectId={projectId} />}
        {tab === 'members' && <MembersTab project={project} />}
      </section>
    </>
  );
}
