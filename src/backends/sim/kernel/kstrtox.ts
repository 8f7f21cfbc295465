/**
 * lib/kstrtox.c: the number and boolean parsers that proc and debugfs files write through.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { kerr } from './errno.js';

/**
 * kstrtouint / kstrtoull(s, 0): an optional '+', then decimal, 0x hex or 0 octal, one trailing
 * newline allowed; EINVAL for anything else, ERANGE above `max` (UINT_MAX by default).
 */
export function kstrtoul(text: string, max = 0xffff_ffff): number {
  const s = text.endsWith('\n') ? text.slice(0, -1) : text;
  const m = /^\+?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(s);
  if (!m) return kerr(ERRNO.EINVAL);
  const body = m[1]!;
  const v = /^0[xX]/.test(body) ? parseInt(body.slice(2), 16) : body.length > 1 && body[0] === '0' ? parseInt(body, 8) : Number(body);
  if (v > max) kerr(ERRNO.ERANGE);
  return v;
}

/** kstrtobool: its first letter (e/y/t/1, d/n/f/0, on/off); undefined for anything else. */
export function kstrtobool(text: string): boolean | undefined {
  const c = text[0] ?? '';
  if ('eEyYtT1'.includes(c) || ((c === 'o' || c === 'O') && 'nN'.includes(text[1] ?? ' '))) return true;
  if ('dDnNfF0'.includes(c) || ((c === 'o' || c === 'O') && 'fF'.includes(text[1] ?? ' '))) return false;
  return undefined;
}
