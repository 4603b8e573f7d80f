// webcnn runtime entry point. Plain ES modules, no dependencies, no build step.
export { load, Model } from './model.js';
export { WebcnnError } from './errors.js';
export { fetchBundle, validateManifest } from './bundle.js';
