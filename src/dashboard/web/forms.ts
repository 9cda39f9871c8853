/** A submitted form's fields by name: as typed (`raw`), trimmed (`text`), or a number (null when empty). */
export function fieldsOf(form: HTMLFormElement) {
  const data = new FormData(form);
  const raw = (name: string) => String(data.get(name) ?? '');
  const text = (name: string) => raw(name).trim();
  const number = (name: string) => (text(name) ? Number(text(name)) : null);
  return { raw, text, number, file: (name: string) => data.get(name) };
}

export type Fields = ReturnType<typeof fieldsOf>;
