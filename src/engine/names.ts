// The engines by name, without loading either.

/** ONNX Runtime and TensorFlow.js; `auto` picks ONNX Runtime when it loads. */
export const ENGINES = ['onnx', 'tfjs'] as const;
export type EngineName = (typeof ENGINES)[number];
export type EngineChoice = 'auto' | EngineName;
/** What a command's core runs a model on when its caller names no engine (the command line always resolves one). */
export const CORE_ENGINE: EngineName = 'tfjs';
