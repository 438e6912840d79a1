"""Every log-probability attack, by name: the one place an attack is registered.

Adding an attack is one new module with one ``Attack`` subclass and one line here.
SaMIA (generation) and the blind baseline (no model) are not per-token attacks and have
their own entry points in ``paramdelta.attacks.samia`` and ``paramdelta.attacks.blind``.
"""

from paramdelta.attacks.base import Attack
from paramdelta.attacks.dc_pdd import DcPddAttack
from paramdelta.attacks.loss import LossAttack
from paramdelta.attacks.lowercase import LowercaseAttack
from paramdelta.attacks.min_k import MinKAttack
from paramdelta.attacks.min_k_plus_plus import MinKPlusPlusAttack
from paramdelta.attacks.reference import ReferenceAttack
from paramdelta.attacks.zlib_ratio import ZlibAttack

ATTACKS: dict[str, Attack] = {
    attack.name: attack
    for attack in (
        LossAttack(),
        ZlibAttack(),
        LowercaseAttack(),
        ReferenceAttack(),
        MinKAttack(),
        MinKPlusPlusAttack(),
        DcPddAttack(),
    )
}
