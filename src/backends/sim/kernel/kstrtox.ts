/**
 * lib/kstrtox.c: the number and boolean parsers that proc and debugfs files write through.
 */
import { ERRNO } from '../../../ioasid/errors.js';
import { U64_MAX } from '../../../ioasid/uapi.js';
import { kerr } from './errno.js';

const S64_MAX = (1n << 63n) - 1n;

/** _kstrtoull(s, 0): decimal, 0x hex or 0 octal, one trailing newline allowed; EINVAL for anything else, ERANGE above U64_MAX. */
function parseUll(text: string): bigint {
  const s = text.endsWith('\n') ? text.slice(0, -1) : text;
  if (!/^(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.test(s)) return kerr(ERRNO.EINVAL);
  const v = BigInt(/^0[0-7]/.test(s) ? `0o${s.slice(1)}` : s);
  if (v > U64_MAX) kerr(ERRNO.ERANGE);
  return v;
}

/** kstrtoull(s, 0): _kstrtoull after an optional '+'. */
export function kstrtoull(text: string): bigint {
  return parseUll(text[0] === '+' ? text.slice(1) : text);
}

/** kstrtoll(s, 0): '-' and _kstrtoull, else kstrtoull; ERANGE outside the s64 range. */
export function kstrtoll(text: string): bigint {
  if (text[0] === '-') {
    const v = parseUll(text.slice(1));
    if (v > S64_MAX + 1n) kerr(ERRNO.ERANGE);
    return -v;
  }
  const v = kstrtoull(text);
  if (v > S64_MAX) kerr(ERRNO.ERANGE);
  return v;
}

/** kstrtouint(s, 0): kstrtoull's rules, ERANGE above UINT_MAX. */
export function kstrtouint(text: string): number {
  const v = kstrtoull(text);
  if (v > 0xffff_ffffn) kerr(ERRNO.ERANGE);
  return Number(v);
}

/** kstrtobool: its first letter (e/y/t/1, d/n/f/0, on/off); undefined for anything else. */
export function kstrtobool(text: string): boolean | undefined {
  const c = text[0] ?? '';
  if ('eEyYtT1'.includes(c) || ((c === 'o' || c === 'O') && 'nN'.includes(text[1] ?? ' '))) return true;
  if ('dDnNfF0'.includes(c) || ((c === 'o' || c === 'O') && 'fF'.includes(text[1] ?? ' '))) return false;
  return undefined;
}
