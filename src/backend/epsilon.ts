// Keras's backend epsilon, without loading TensorFlow.js.

/** Probabilities are clipped to [EPSILON, 1 - EPSILON] before the log of a cross-entropy, as Keras clips them. */
export const EPSILON = 1e-7;
