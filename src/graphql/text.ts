import type { FieldViolation } from '../errors.js';

// Control characters (NUL, escapes, ...), except the line breaks and tabs that multi-line text keeps.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\p{Cc}]/u;
// eslint-disable-next-line no-control-regex
const CONTROL_EXCEPT_LINES = /[^\P{Cc}\n\r\t]/u;
/** Characters that reorder the text around them (the "Trojan Source" trick) or a line/paragraph separator. */
const BIDI_OR_SEPARATOR = /[\p{Bidi_Control}\u2028\u2029]/u;
/** Text made only of these shows as nothing at all. */
const INVISIBLE_ONLY = /^[\p{White_Space}\p{Default_Ignorable_Code_Point}\p{Cf}\p{Mn}\p{Me}]*$/u;

/** Stored text is NFC (one form for what looks the same) and trimmed. */
export function normalizeText(raw: string): string {
  return raw.normalize('NFC').trim();
}

/**
 * Why `text` (normalized) may not be stored as a name or description, or undefined: too short or
 * long, control characters (line breaks and tabs only in multi-line text), bidi controls, or
 * nothing visible.
 */
export function textViolation(
  text: string,
  field: string,
  { minLength = 1, maxLength, multiline = false }: { minLength?: number; maxLength: number; multiline?: boolean },
): FieldViolation | undefined {
  if (text.length < minLength || text.length > maxLength) {
    return { field, message: minLength > 0 ? `must be ${minLength} to ${maxLength} characters` : `must be at most ${maxLength} characters` };
  }
  if ((multiline ? CONTROL_EXCEPT_LINES : CONTROL).test(text)) {
    return { field, message: `must not contain control characters${multiline ? ' other than line breaks and tabs' : ''}` };
  }
  if (BIDI_OR_SEPARATOR.test(text)) return { field, message: 'must not contain bidirectional-text controls or line separators' };
  if (text.length > 0 && INVISIBLE_ONLY.test(text)) return { field, message: 'must contain a visible character' };
  return undefined;
}

/** Whether a short value (a run-config string, a key) holds a control or bidi character. */
export function hasControlCharacters(text: string): boolean {
  return CONTROL.test(text) || BIDI_OR_SEPARATOR.test(text);
}
