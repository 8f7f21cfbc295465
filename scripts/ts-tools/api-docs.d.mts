/** The API reference's builder (api-docs.mjs). */

/** Every local link in the HTML under `dir` that reaches no file, or no element with its anchor. */
export function brokenLinks(dir: string): string[];

/** Build the reference into `out`; returns the problems found (none: it is complete and its links resolve). */
export function build(out: string): Promise<string[]>;
