// Layers Keras has and TensorFlow.js lacks, registered for (de)serialization so saved models load back.
import type { Tensor, Tf } from '../backend/index.js';

type LayerArgs = ConstructorParameters<Tf['layers']['Layer']>[0];

let defined: ReturnType<typeof define> | null = null;

function define(tf: Tf) {
  /**
   * Porting note: Keras's GlobalAveragePooling2D takes `keepdims` (MobileNet's top uses it); tfjs's does not.
   * This class keeps tfjs's name and behaviour when keepdims is false, so it replaces tfjs's in the registry.
   */
  class GlobalAveragePooling2D extends tf.layers.Layer {
    static className = 'GlobalAveragePooling2D';
    readonly keepdims: boolean;
    readonly dataFormat: string;

    constructor(args: LayerArgs & { keepdims?: boolean; dataFormat?: string } = {}) {
      super(args);
      this.keepdims = args.keepdims ?? false;
      this.dataFormat = args.dataFormat ?? 'channelsLast';
      if (this.dataFormat !== 'channelsLast') throw new Error(`GlobalAveragePooling2D supports channelsLast only; received ${this.dataFormat}`);
    }

    override computeOutputShape(inputShape: (number | null)[]): (number | null)[] {
      return this.keepdims ? [inputShape[0] ?? null, 1, 1, inputShape[3] ?? null] : [inputShape[0] ?? null, inputShape[3] ?? null];
    }

    override call(inputs: Tensor | Tensor[]): Tensor {
      const x = Array.isArray(inputs) ? inputs[0]! : inputs;
      return tf.mean(x, [1, 2], this.keepdims);
    }

    override getConfig() {
      return { ...super.getConfig(), dataFormat: this.dataFormat, ...(this.keepdims ? { keepdims: true } : {}) };
    }
  }
  /**
   * Porting note: tf.keras records arithmetic on Keras tensors (`x + 3.`, `x * (1. / 6.)` in MobileNetV3's
   * hard-sigmoid) as TFOpLambda layers. This layer does the two such operations Keras applications use, with a
   * constant operand, so the layer list matches tf.keras's row for row.
   */
  class TFOpLambda extends tf.layers.Layer {
    static className = 'TFOpLambda';
    readonly op: 'add' | 'multiply';
    readonly operand: number;

    constructor(args: LayerArgs & { op?: 'add' | 'multiply'; operand?: number; function?: string }) {
      super(args);
      this.op = args.op ?? (args.function?.endsWith('multiply') ? 'multiply' : 'add');
      this.operand = args.operand ?? 0;
    }

    override computeOutputShape(inputShape: (number | null)[]): (number | null)[] {
      return inputShape;
    }

    override call(inputs: Tensor | Tensor[]): Tensor {
      const x = Array.isArray(inputs) ? inputs[0]! : inputs;
      return this.op === 'add' ? tf.add(x, this.operand) : tf.mul(x, this.operand);
    }

    override getConfig() {
      return { ...super.getConfig(), function: this.op === 'add' ? '__operators__.add' : 'math.multiply', op: this.op, operand: this.operand };
    }
  }
  tf.serialization.registerClass(GlobalAveragePooling2D);
  tf.serialization.registerClass(TFOpLambda);
  return { GlobalAveragePooling2D, TFOpLambda };
}

/** Keras's names for unnamed layers: a counter per base name (`re_lu`, `re_lu_1`, ...), fresh for each model. */
export function kerasAutoNamer(): (base: string) => string {
  const counters = new Map<string, number>();
  return (base) => {
    const n = counters.get(base) ?? 0;
    counters.set(base, n + 1);
    return n === 0 ? base : `${base}_${n}`;
  };
}

/**
 * A standalone ES module that defines and registers these layers with the `tf` it is given, written beside a saved
 * model that uses them: `register(tf)` before `tf.loadLayersModel`. Generated from the same code tl runs.
 */
export function customLayersModule(): string {
  return `// Layers this model uses that TensorFlow.js does not define (written by tl). Call register(tf) once before
// tf.loadLayersModel: import { register } from './tl-layers.mjs'; register(tf);
export function register(tf) {
  return (${define.toString()})(tf);
}
`;
}

/** tl's custom layers, defined and registered once per process. */
export function customLayers(tf: Tf): ReturnType<typeof define> {
  defined ??= define(tf);
  return defined;
}
