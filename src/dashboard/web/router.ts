import { useSyncExternalStore } from 'react';

/**
 * Pages live in the URL's fragment (#/projects/ID), so every page is the one document Pollen
 * serves at `/`, and no route of the dashboard can shadow one of the API's.
 */
export type Route =
  | { page: 'projects' }
  | { page: 'project'; projectId: string; tab: ProjectTab }
  | { page: 'job'; jobId: string }
  | { page: 'compare'; jobIds: string[] };

export const PROJECT_TABS = ['jobs', 'apps', 'configs', 'nodes', 'members'] as const;
export type ProjectTab = (typeof PROJECT_TABS)[number];

const ID = '([0-9a-f]{24})';

export function parseRoute(hash: string): Route {
  const [path = '', query = ''] = hash.replace(/^#/, '').split('?');
  const project = new RegExp(`^/projects/${ID}(?:/(\\w+))?$`).exec(path);
  if (project) {
    const tab = PROJECT_TABS.find((name) => name === project[2]) ?? 'jobs';
    return { page: 'project', projectId: project[1]!, tab };
  }
  const job = new RegExp(`^/jobs/${ID}$`).exec(path);
  if (job) return { page: 'job', jobId: job[1]! };
  if (path === '/compare') {
    const jobIds = (new URLSearchParams(query).get('jobs') ?? '').split(',').filter((id) => /^[0-9a-f]{24}$/.test(id));
    return { page: 'compare', jobIds: [...new Set(jobIds)] };
  }
  return { page: 'projects' };
}

export function href(route: Route): string {
  switch (route.page) {
    case 'projects': return '#/';
    case 'project': return `#/projects/${route.projectId}${route.tab === 'jobs' ? '' : `/${route.tab}`}`;
    case 'job': return `#/jobs/${route.jobId}`;
    case 'compare': return route.jobIds.length > 0 ? `#/compare?jobs=${route.jobIds.join(',')}` : '#/compare';
  }
}

export function navigate(route: Route): void {
  location.hash = href(route);
}

function subscribe(listener: () => void): () => void {
  window.addEventListener('hashchange', listener);
  return () => window.removeEventListener('hashchange', listener);
}

export function useRoute(): Route {
  const hash = useSyncExternalStore(subscribe, () => location.hash);
  return parseRoute(hash);
}
