/**
 * keg's model layer: HF checkpoints (safetensors, shards, hub cache), configs, tokenizers, and the
 * transformer forward/backward on WebGPU.
 * @module
 */
export * from "./precision.ts";
export * from "./safetensors.ts";
export * from "./npz.ts";
export * from "./checkpoint.ts";
export * from "./config.ts";
export * from "./tokenizer.ts";
export * from "./architecture.ts";
export * from "./transformer.ts";
export * from "./backward.ts";
export * from "./placement.ts";
export * from "./load.ts";
export * from "./generate.ts";
export * from "./score.ts";
export * from "./llama_like.ts";
export * from "./families/mod.ts";
export * from "./shapes.ts";
export * from "./virtual_model.ts";
