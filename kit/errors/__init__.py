"""Every error the kit raises on purpose: what went wrong, then the next step.

The classes live in files by stage (base, models, serving, using, mcp); this
file only gathers their names, so `from kit.errors import X` finds them all.

>>> raise ModelNotFound("llama9:1t", installed=["smollm2:135m"])
Traceback (most recent call last):
...
kit.errors.ModelNotFound: No model named 'llama9:1t'. Installed: smollm2:135m. ...
"""
from __future__ import annotations

from kit.errors.base import (
    KitError, ModelNotFound, SetupFailed, RegistryDamaged, ModelFileMissing,
    BadModelFile, EmptyPrompt, BadParameter, WontFit, PromptTooLong, EngineMissing
)
from kit.errors.models import (
    HubOffline, HubAccessDenied, HubNotFound, ChecksumMismatch, NotEnoughDisk,
    DiskFull, DownloadFailed, NotPulledYet, PackError, PackInstallFailed, NoGpuSupport,
    UnknownModelName, UnknownQuantType, OutputExists, QuantizeFailed, EvalTextTooShort,
    EngineCannotRun, NoCtransformersGpu, BadPromptSet
)
from kit.errors.serving import (
    BadSchema, StructuredOutputInvalid, ApiKeyRequired, PortInUse, ServerStartFailed,
    ServerBusy, KeyNameTaken, UnknownKey, ModelNotAllowed, RemoteError, BadRequest,
    ClientGone, ChatTemplateError, NoSchemaSupport, UnknownEngine, ListedTwice,
    NoSuchTensor, DecodeFailed, BenchNeedsLlamaCpp, NotABenchFile, LoadFailed,
    NothingToEvaluate, OtherTokens, EmptyMessage, FolderNotWritable, UnknownDashboard,
    DashboardMissing, NoFreePort, DashboardPortBusy, VoilaStopped, VoilaTimedOut,
    QuizNotFound, BadQuiz, HubMissing, NpmMissing, HubStartFailed,
    HubNotRunning, HubUnsafe
)
from kit.errors.using import (
    NoDocuments, Unreadable, BadTool, ToolsUnsupported, UnknownTool, NoToolCall,
    ToolFailed, TrainingUnavailable, NotTextData, TrainingDataTooShort,
    TrainingTooLong, TrainingWontFit, UnsupportedArchitecture, TrainingInProgress,
    NoFillInMiddle, NotAnEmbeddingModel, NotAChatModel, TextTooLongToEmbed,
    EmbeddingTruncated, BadTopCount, NoProbabilities, TooMuchToEmbed
)
from kit.errors.mcp import McpServerMissing, McpServerFailed
