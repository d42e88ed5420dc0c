/**
 * keg's GPU layer: devices, tensors, shader loading and errors.
 * @module
 */
export * from "./device.ts";
export * from "./dtype.ts";
export * from "./errors.ts";
export * from "./tensor.ts";
export { composeShader, loadShaderSource } from "./shader.ts";
export { Capture, type CapturedCommand, type TextureCopy } from "./capture.ts";
export {
  type GpuCounters,
  type OpProfile,
  type ProfileReport,
  profileStage,
  type StageProfile,
} from "./profile.ts";
