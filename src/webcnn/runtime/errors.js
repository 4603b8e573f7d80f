// Every failure a page can see: `code` is stable for programs, `message` names the problem and the fix.
export class WebcnnError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'WebcnnError';
    this.code = code;
  }
}

export function fail(code, message) {
  throw new WebcnnError(code, message);
}
