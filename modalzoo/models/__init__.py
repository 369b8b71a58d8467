"""Every family; importing this package registers them all with the Auto classes."""

from . import reference  # noqa: F401
from . import titok  # noqa: F401
from . import wavtokenizer  # noqa: F401
from . import one_d_piece  # noqa: F401
from . import xcodec  # noqa: F401
from . import flextok  # noqa: F401
from . import dm_codec  # noqa: F401
from . import tokenflow  # noqa: F401
from . import semanticodec  # noqa: F401
from . import vat  # noqa: F401
from . import cad_tokenizer  # noqa: F401
