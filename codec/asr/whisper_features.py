"""openai-whisper's audio encoder as a frozen semantic-feature backend (`ASRFeatureExtractor`).

Whisper's encoder only accepts whole 30 s windows (3000 log-mel frames -> 1500 encoder frames at 50 Hz), and its
self-attention spans the whole window, so every item is padded with zeros to whole windows on its own, exactly
as whisper pads a single clip. Padding in the batch therefore never changes an item's features. Inputs longer
than 30 s are cut into consecutive 30 s windows, as `whisper.transcribe` does: the log-mel of the whole item is
computed once, sliced into 3000-frame windows, each encoded alone, and the encoder frames concatenated. A window
holds exactly 375 base frames (480000 / 1280), so window edges fall on the 12.5 Hz grid.

Checkpoints are our safetensors folders (`config.json` + `model.safetensors`, encoder weights only);
`convert_openai_whisper_checkpoint` makes one from an official `.pt` file without executing pickled code.
There is no bundled Whisper: `from_pretrained()` needs a path or URI.

openai-whisper is imported inside functions: it is slow to import and only needed when this backend is used.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from codec.asr.base import ASRFeatureExtractor
from codec.common.checkpoints import PICKLE_SUFFIXES, resolve_checkpoint, save_safetensors
from codec.common.errors import CheckpointError
from codec.common.fileio import write_json_atomic
from codec.common.pretrained import CONFIG_NAME, WEIGHTS_NAME, PretrainedMixin, config_from_dict
from codec.framing import num_base_frames, pool_frames

WINDOW_SAMPLES = 480000  # whisper.audio.N_SAMPLES: 30 s at 16 kHz
WINDOW_MEL_FRAMES = 3000  # whisper.audio.N_FRAMES: 100 Hz log-mel frames per window
SAMPLES_PER_ENCODER_FRAME = 320  # 160-sample mel hop x the encoder's stride-2 conv: 50 Hz
ENCODER_RATE = 50.0

_CONVERT_HINT = (
    "convert an official openai-whisper .pt file with "
    "codec.asr.whisper_features.convert_openai_whisper_checkpoint(pt_path, out_dir) and pass that folder"
)


@dataclass
class WhisperFeatureConfig:
    """openai-whisper's `ModelDimensions` plus which encoder layer to use as the feature.

    Only the audio fields shape the model; the text fields are kept (optional) so a converted checkpoint records
    the full dimensions it came from. `layer=None` is the encoder's output (after `ln_post`, what whisper's
    decoder attends to); `layer=k` (0..n_audio_layer) is the residual stream after the first `k` blocks, without
    `ln_post` (0: the convolutional front end plus positions).
    """

    n_mels: int = 80
    n_audio_ctx: int = 1500
    n_audio_state: int = 384
    n_audio_head: int = 6
    n_audio_layer: int = 4
    n_vocab: int | None = None
    n_text_ctx: int | None = None
    n_text_state: int | None = None
    n_text_head: int | None = None
    n_text_layer: int | None = None
    layer: int | None = None
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if self.n_mels not in (80, 128):
            raise ValueError(f"n_mels must be 80 or 128 (whisper's mel filterbanks), got {self.n_mels}")
        if self.n_audio_ctx != WINDOW_MEL_FRAMES // 2:
            # The encoder asserts its input is exactly one 30 s window; other contexts cannot take whisper's mel.
            raise ValueError(f"n_audio_ctx must be {WINDOW_MEL_FRAMES // 2} (30 s windows), got {self.n_audio_ctx}")
        if self.n_audio_state % self.n_audio_head:
            raise ValueError(f"n_audio_state {self.n_audio_state} is not divisible by n_audio_head {self.n_audio_head}")
        if self.layer is not None and not 0 <= self.layer <= self.n_audio_layer:
            raise ValueError(f"layer must be None or in 0..{self.n_audio_layer}, got {self.layer}")
        if self.sample_rate != 16000:
            raise ValueError(f"whisper works at 16000 Hz, got sample_rate {self.sample_rate}")


class WhisperFeatureExtractor(nn.Module, PretrainedMixin, ASRFeatureExtractor):
    """Frozen whisper encoder features pooled from 50 Hz to the 12.5 Hz grid (`feature_dim = n_audio_state`).

    Always in eval mode with `requires_grad=False` parameters; `extract` runs under `no_grad`.
    """

    config_class = WhisperFeatureConfig
    bundle_name = "whisper"  # unused: there is no bundled Whisper (from_pretrained() requires a path)
    #: windows encoded per forward pass; bounds memory on long or large batches (results do not depend on it)
    max_windows_per_forward: int = 8

    def __init__(self, config: WhisperFeatureConfig):
        super().__init__()
        from whisper.model import AudioEncoder

        self.config = config
        self.feature_dim = config.n_audio_state
        self.sample_rate = config.sample_rate
        # Named `encoder` so its state-dict keys equal the official checkpoint's `encoder.*` keys.
        self.encoder = AudioEncoder(
            config.n_mels, config.n_audio_ctx, config.n_audio_state, config.n_audio_head, config.n_audio_layer
        )
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> WhisperFeatureExtractor:
        """Stays in eval mode whatever a parent module asks: the encoder is frozen."""
        return super().train(False)

    # ----------------------------------------------------------------------------------------------- features

    def _log_mel_windows(self, item: torch.Tensor) -> torch.Tensor:
        """One item's valid samples `[L]` (L > 0) -> whisper log-mel windows `[W, n_mels, 3000]`, W = ceil(L / 480000).

        Zero-padding to whole windows before the log-mel is what whisper does for one clip (`pad_or_trim` then
        `log_mel_spectrogram`); the mel's dynamic-range clamp (max - 8) is per item, so it never sees other items.
        """
        from whisper.audio import log_mel_spectrogram

        num_windows = -(-item.shape[-1] // WINDOW_SAMPLES)
        padded = nn.functional.pad(item.float(), (0, num_windows * WINDOW_SAMPLES - item.shape[-1]))
        mel = log_mel_spectrogram(padded, n_mels=self.config.n_mels)  # [n_mels, W * 3000]
        return mel.reshape(self.config.n_mels, num_windows, WINDOW_MEL_FRAMES).transpose(0, 1)

    def _encode_windows(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel windows `[N, n_mels, 3000]` -> hidden states `[N, 1500, n_audio_state]` of the configured layer."""
        enc = self.encoder
        x = mel.to(enc.conv1.weight.dtype)
        if self.config.layer is None:
            return enc(x)
        # Whisper's AudioEncoder.forward up to block `layer`, without ln_post.
        x = nn.functional.gelu(enc.conv1(x))
        x = nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = (x + enc.positional_embedding).to(x.dtype)
        for block in list(enc.blocks)[: self.config.layer]:
            x = block(x)
        return x

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, wav_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`[B, S]` 16 kHz waveforms -> (hidden `[B, T', n_audio_state]` at 50 Hz, `[B]` lengths `ceil(samples / 320)`).

        Frames past each length are zero. Items are windowed independently; all windows of the batch are encoded
        together, `max_windows_per_forward` at a time.
        """
        device = self.encoder.conv1.weight.device
        wav, wav_lengths = _check_batch(wav, wav_lengths)
        wav, wav_lengths = wav.to(device), wav_lengths.to(device)
        lengths = torch.div(wav_lengths + SAMPLES_PER_ENCODER_FRAME - 1, SAMPLES_PER_ENCODER_FRAME, rounding_mode="floor")
        batch, max_frames = wav.shape[0], int(lengths.max()) if wav.shape[0] else 0
        dtype = self.encoder.conv1.weight.dtype
        hidden = torch.zeros(batch, max_frames, self.feature_dim, device=device, dtype=dtype)
        windows = [self._log_mel_windows(wav[b, : int(n)]) for b, n in enumerate(wav_lengths.tolist()) if n > 0]
        if not windows:  # every item empty
            return hidden, lengths
        mel = torch.cat(windows)  # [N, n_mels, 3000], items in order
        encoded = torch.cat([self._encode_windows(chunk) for chunk in mel.split(self.max_windows_per_forward)])
        start = 0
        for b, count in enumerate(lengths.tolist()):
            if count == 0:
                continue
            num_windows = -(-count // (WINDOW_MEL_FRAMES // 2))
            # Concatenated windows; keep the item's valid frames only (the rest encodes whisper's zero padding).
            hidden[b, :count] = encoded[start : start + num_windows].reshape(-1, self.feature_dim)[:count]
            start += num_windows
        return hidden, lengths

    @torch.no_grad()
    def extract(self, wav: torch.Tensor, wav_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder features pooled to 12.5 Hz: `[B, T, n_audio_state]` with `T = ceil(samples / 1280)`, and `[B]` lengths.

        Each 12.5 Hz frame averages the four 50 Hz frames inside it (fewer at an item's end); zero past each length.
        """
        wav, wav_lengths = _check_batch(wav, wav_lengths)
        hidden, lengths = self.encode(wav, wav_lengths)
        num_out = num_base_frames(wav_lengths.to(hidden.device))
        if hidden.shape[0] == 0 or int(num_out.max()) == 0:
            return hidden.new_zeros(hidden.shape[0], 0, self.feature_dim), num_out
        return pool_frames(hidden, lengths, ENCODER_RATE, num_out), num_out

    # ---------------------------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
    ) -> WhisperFeatureExtractor:
        """Load a folder written by `save_pretrained` / the converter, or an hf:// / https:// URI of one.

        There is no bundled default, and pickle files (official `.pt`) are refused: convert them first.
        """
        if path is None:
            raise CheckpointError(
                "there is no bundled Whisper model: pass a converted checkpoint folder or an hf://org/repo URI of one "
                f"to WhisperFeatureExtractor.from_pretrained (or 'whisper:<path_or_uri>'); {_CONVERT_HINT}"
            )
        text = os.fspath(path)
        if _is_pickle_name(text):  # refuse before downloading a remote .pt
            raise CheckpointError(f"'{text}' is a pickle checkpoint, which is not loaded directly: {_CONVERT_HINT}")
        local = resolve_checkpoint(text, what="Whisper checkpoint")
        if local.is_file() and _is_pickle_name(local.name):
            raise CheckpointError(f"'{text}' is a pickle checkpoint, which is not loaded directly: {_CONVERT_HINT}")
        return super().from_pretrained(local, device=device)  # type: ignore[return-value]


def _is_pickle_name(name: str) -> bool:
    """Whether a path or URL names a pickle file by its suffix (query strings ignored)."""
    return name.split("?", 1)[0].lower().endswith(PICKLE_SUFFIXES)


def _check_batch(wav: torch.Tensor, wav_lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a `[B, S]` batch and return it with `[B]` long lengths (all `S` when omitted)."""
    if wav.dim() != 2:
        raise ValueError(f"wav must be [B, S], got shape {tuple(wav.shape)}")
    if wav_lengths is None:
        return wav, torch.full((wav.shape[0],), wav.shape[-1], dtype=torch.long, device=wav.device)
    wav_lengths = wav_lengths.long()
    if wav_lengths.shape != (wav.shape[0],) or bool((wav_lengths < 0).any()) or bool((wav_lengths > wav.shape[-1]).any()):
        raise ValueError(f"wav_lengths must be [B] in 0..{wav.shape[-1]}, got {wav_lengths.tolist()}")
    return wav, wav_lengths


def convert_openai_whisper_checkpoint(
    pt_path: str | os.PathLike, out_dir: str | os.PathLike, layer: int | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Convert an official openai-whisper `.pt` (`{"dims": ..., "model_state_dict": ...}`) into our safetensors folder.

    The file is read with `torch.load(weights_only=True)`, the restricted unpickler that builds only tensors and
    plain containers (no code runs). Only the `encoder.*` weights are written, in their stored dtype unless
    `dtype` is given; `layer` picks the feature layer (see `WhisperFeatureConfig`). Returns `out_dir`.
    """
    source = Path(pt_path).expanduser()
    if not source.is_file():
        raise CheckpointError(f"whisper checkpoint '{source}' does not exist: give the path of an official openai-whisper .pt file")
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError for disallowed objects, RuntimeError/EOFError for broken files
        reason = " ".join(str(error).split())[:200]
        raise CheckpointError(f"cannot read '{source}' as an openai-whisper checkpoint ({type(error).__name__}: {reason})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("dims"), dict) or not isinstance(
        checkpoint.get("model_state_dict"), dict
    ):
        raise CheckpointError(f"'{source}' is not an openai-whisper checkpoint: expected a dict with 'dims' and 'model_state_dict'")
    config = config_from_dict(WhisperFeatureConfig, {**checkpoint["dims"], "layer": layer}, str(source))
    state = {k: v for k, v in checkpoint["model_state_dict"].items() if k.startswith("encoder.")}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}

    # Check names and shapes against a weightless (meta) model: a large-v3 encoder need not be built in memory.
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in WhisperFeatureExtractor(config).state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"'{source}' does not match its own dims: missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}"
        )
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors(state, folder / WEIGHTS_NAME, metadata={"format": "pt", "model": WhisperFeatureExtractor.__name__})
    write_json_atomic(folder / CONFIG_NAME, dataclasses.asdict(config))
    return folder


__all__ = ["WhisperFeatureConfig", "WhisperFeatureExtractor", "convert_openai_whisper_checkpoint"]
