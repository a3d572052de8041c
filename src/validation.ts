/** zod issues, in the words this project uses for them (API problems, configuration errors). */

export interface ValidationIssue {
  path: PropertyKey[];
  message: string;
  code?: string;
  expected?: unknown;
  format?: string;
  origin?: string;
  minimum?: unknown;
}

/** zod's message, in plainer words where zod's own read oddly ("received NaN"). */
export function plainly(issue: ValidationIssue): string {
  // zod leaves the input out of its issues; its message names what it received.
  if (issue.code === "invalid_type" && issue.message.endsWith("received undefined")) {
    return "required";
  }
  if (issue.code === "invalid_type" && issue.expected === "number") return "expected a number";
  if (issue.code === "too_small" && issue.origin === "string" && issue.minimum === 1) {
    return "must not be empty";
  }
  if (issue.code === "invalid_format" && issue.format === "datetime") {
    return "expected an RFC 3339 time with its offset, like 2026-11-27T08:00:00Z";
  }
  return issue.message;
}
