// The shape of a registry entry: plain data describing a pretrained model variant.
import type { LayersModel, Tf } from '../backend/index.js';

/** How pixels are mapped to the network's input range. */
export const PREPROCESS_MODES = ['caffe', 'tf', 'torch', 'raw01', 'none'] as const;
export type PreprocessMode = (typeof PREPROCESS_MODES)[number];

/** Where a variant's weights come from. */
export type WeightSource =
  | {
      kind: 'keras-h5';
      url: string;
      /** Keras's published hash (md5 or sha256 hex); null where Keras publishes none (the first download's sha256 is recorded). */
      hash: string | null;
      includeTop: boolean;
      /** Input size the weights were trained at, where a family publishes several (MobileNet: 128-224). */
      inputSize?: number;
    }
  | {
      kind: 'nsfwjs';
      model: 'mobilenet_v2' | 'inception_v3';
      includeTop: boolean;
      /** The file names unnamed layers as Keras 2.2 did (`conv2d_1` first), not as tf.keras does (`conv2d`). */
      keras2AutoNames?: boolean;
    };

export interface BuildOptions {
  includeTop: boolean;
  /** Classes of the top; defaults to the variant's. */
  classes?: number;
  /** Square input size; defaults to the variant's. */
  inputSize?: number;
}

/** A model family's builder: creates the Keras-faithful graph with random weights. */
export type Builder = (tf: Tf, variant: Variant, options: Required<BuildOptions>) => LayersModel;

export interface Variant {
  /** `arch` or `arch.tag`; the bare name is the default tag. */
  name: string;
  family: string;
  /** Keras application this variant mirrors layer for layer (e.g. `ResNet50`). */
  keras: string;
  inputSize: number;
  preprocess: PreprocessMode;
  /** Architecture parameters (alpha, depth multiplier, block counts, ...). */
  args: Readonly<Record<string, number>>;
  /** Which classifier the pretrained top is: Keras's own (default) or one a weight source defines. */
  head?: 'keras' | 'nsfwjs';
  /** Classes of the pretrained top. */
  topClasses: number;
  /** Parameters and layers of the backbone without its top (checked against the built model by the registry sweep). */
  backbone: { params: number; layers: number };
  /** Names of the pretrained top's classes, where tl ships them. */
  topLabels?: readonly string[];
  weights: readonly WeightSource[];
  /**
   * Backbone layers `tl finetune` freezes when `--freeze` is not given: a published fine-tuning recipe's cut. Without
   * one, only the head trains.
   */
  fineTuneFrom?: { layers: number; why: string };
  trainedOn: string;
  license: string;
  origin: string;
}

/** A family: its builder and its variants. */
export interface Family {
  name: string;
  paper: string;
  /** Names of the layers that end a block (where `--freeze auto` considers cutting; only cuts one tensor crosses count). */
  blockEnd: RegExp;
  build: Builder;
  variants: readonly Variant[];
}
