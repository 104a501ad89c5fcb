// The engines by name, without loading either.

/** ONNX Runtime and TensorFlow.js; `auto` picks ONNX Runtime when it loads. */
export const ENGINES = ['onnx', 'tfjs'] as const;
export type EngineName = (typeof ENGINES)[number];
export type EngineChoice = 'auto' | EngineName;
