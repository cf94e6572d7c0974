"""SKEYSEED, prf+ key streams, child SA KEYMAT and IKE SA rekeying against published
SP 800-135 IKEv2 KDF vectors (NIST CAVP "ikev2" test file / NIST ACVP).

Each case gives Ni, Nr, g^ir, g^ir (new), SPIi, SPIr and the expected SKEYSEED,
DKM = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr), DKM(Child SA) = prf+(SK_d, Ni | Nr),
DKM(Child SA D-H) = prf+(SK_d, g^ir (new) | Ni | Nr) and
SKEYSEED(Rekey) = prf(SK_d, g^ir (new) | Ni | Nr), where SK_d is the first
prf-output-length octets of DKM. Fields a source does not publish are None.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from lab.ike.const import EncrId, IntegId, PrfId
from lab.ike.crypto import (
    child_keymat,
    derive_child_sa_keys,
    derive_ike_sa_keys,
    derive_rekeyed_ike_sa_keys,
    encr_key_size,
    get_prf,
    prf_plus,
    rekey_skeyseed,
    skeyseed,
)
from lab.ike.errors import CryptoError


def H(s: str) -> bytes:
    return bytes.fromhex("".join(s.split()))


@dataclass
class KdfCase:
    source: str
    prf_id: PrfId
    ni: str
    nr: str
    gir: str
    gir_new: str
    spi_i: str
    spi_r: str
    skeyseed: str
    dkm: str
    dkm_child: str | None
    dkm_child_dh: str | None
    skeyseed_rekey: str


CASES = [
    KdfCase(
        source="NIST CAVP SP 800-135 ikev2 sample, SHA-1 COUNT 0 (as reproduced in libreswan "
        "programs/cavp and NSS gtests ike_sha1_vectors.h)",
        prf_id=PrfId.HMAC_SHA1,
        ni="32b50d5f4a3763f3",
        nr="9206a04b26564cb1",
        gir="4b2c1f971981a8ad8d0abeafabf38cf75fc8349c148142465ed9c8b516b8be52",
        gir_new="863f3c9d06efd39d2b907b97f8699e5dd5251ef64a2a176f36ee40c87d4f9330",
        spi_i="34c9e7c188868785",
        spi_r="3ff77d760d2b2199",
        skeyseed="a9a7b222b59f8f48645f28a1db5b5f5d7479cba7",
        dkm="""a14293677cc80ff8f9cc0eee30d895da9d8f405666e30ef0dfcb63c634a46002
            a2a63080e514a062768b76606f9fa5e992204fc5a670bde3f10d6b027113936a
            5c55b648a194ae587b0088d52204b702c979fa280870d2ed41efa9c549fd1119
            8af1670b143d384bd275c5f594cf266b05ebadca855e4249520a441a81157435
            a7a56cc4""",
        dkm_child="""8059e3ee8810e6c3a91bc8bcd2a7a41151b8d0e6ae239c7b38093ad85ef4c581
            1a8e7b5d1cdabd9560b2d5e092d1f24e2d4b85eccdf0ad0dc9abd94b51ee7181
            4ca6dbc8bb51b6309f5b9545c7eb35cf5580b1e521a8fe20754a2d883ba0c2cf
            285f524aea6545b33106bc03e614296d319d41d4b50b3f510b1c0a22f3e66499
            4d234cb4""",
        dkm_child_dh="""bb43244c1860ad65ee1e211ffe8bb3661750c8f89cb9f547df7f4fa61d373016
            28190e38c66232eab4b3ab14c400a5197dd3730ed4820a8a10394d51e1c04000
            52f63ebd36b0e7ef53aaed31eba4a5080d7d4b5666023a8bbb5ffb7857240f9a
            05884d1b7d2f933708450b7b3288f1fc863ab49fa901227cffc06e27899c7054
            d56fd74c""",
        skeyseed_rekey="63e81194946ebd05df7df5ebf5d8750056bf1f1d",
    ),
    KdfCase(
        source="NIST CAVP SP 800-135 ikev2.zip, SHA-1 (Ni 3651fef5c9c35e93), as quoted with its "
        "intermediate T blocks in a public KDF crate's test_tpm_ike2",
        prf_id=PrfId.HMAC_SHA1,
        ni="3651fef5c9c35e93",
        nr="c09a8b90a3f04d59",
        gir="""d084a30166a50fb7325c3960874a839449ef9741c2f4f947d0201dd8c1269273
            d79509f37e3ca3eb4fa2fe2a28254e289cd3f34dad4eb4df1a07685a4b8a94fa
            61e2491f7598b3ce65547ff133b3f63d1ac4175eaa695033f3cedb026a6873a3
            6455172a8540b8a5d23a0143bed0390ee49b168269d75fffee9fb62be965993c""",
        gir_new="""52f00ab174c25d5b7139ae5ff4e8e9eddee5992d2e36adf8a559ffd90dab1442
            e4fbe429d320c0f33552a17d1557fa41ea70e8fb916c4fa27ed52b5f8ebd8461
            afa78f1159159a64055ac5f6319e29c28eae58cbc6847770f32c3fed1d047504
            84f854790f95e9ec01bc5bc461f24966462e359511329305038e94deb6dd42c2""",
        spi_i="8e5c3ae507221684",
        spi_r="b1f201bb155c3acd",
        skeyseed="cd2e8050137832245f1dbacc6e4f0a92f94d45d6",
        dkm="""6f1b12cad3cbe097b35430356d869d54cddb0198ec859174d53ceb92dddedbe2
            436db69f60977c58fa63bbb667f8d36920b109baae8f6c61a9ac49feda018432
            25d080ec5539d5881a25521ffb2a0a91874a9c0a27fcc2d717eb8963a9e3a89c
            7ab264757284c28cf8c3ca40576f4220b052b1fb8e9ad60ba3c80557323331a8
            cbb89f20""",
        dkm_child="""4727dc0ef94eb326ce131cf282fb652faa638ad0ddae3786a11bcc0309876009
            f8c485de011ad962c5b1ca8a41ff8145445749079c5686e26ffebbc342f06981
            f3da745e11ca0976424d1f8caec623d59dc7186deb20a27b411d1dcb70a36544
            0bf7de905088b0692e8addc094e18d1939bdb67e89798ca6b239e2ccb81c2409
            dac0106c""",
        dkm_child_dh="""b109c21ad4c0797768c1cec9e63554681e48f224bca7f23c20c4ea7041983451
            e9aa1d5408656c8a975ff1b9d9a12c75ffeb64bdecb30174664cccb4e14f1c37
            7b7f6d1525af77c7092aac3e47f917ebae8297fb5539d2008ce830823a09cc19
            7361d4a289c72745f6ce9fefe812be5bf55b3200fbb82e41a4a40877d3fe106d
            b909707b""",
        skeyseed_rekey="3b03bce748c96d5e8306918d2ff89b68f0648da3",
    ),
    KdfCase(
        source="NIST CAVP SP 800-135 ikev2 sample, SHA-256 (as reproduced in NSS gtests "
        "ike_sha256_vectors.h, tests 6-8)",
        prf_id=PrfId.HMAC_SHA2_256,
        ni="3f302be1abcb28e1",
        nr="8c332ee006064c9b",
        gir="0f4d257d7a58fc4545c7d7a88119eee5d5c9690c5b4c989171d3abbfd99d1d29",
        gir_new="25f3b12d6f282739256e39bf54eda53b60ffcf379bb7bcc90c27b4c4c578616c",
        spi_i="40dac39e1e1a8640",
        spi_r="8619a1cf9a6e4c07",
        skeyseed="5f00d1bd2c58ec224b1e6b71fa0f19a1faa7a193952c444411b47c1a9d8ba6fe",
        dkm="""0b137d669b0947d7d026d593f0305ad401ff0c471357d695778a9c7f4b4869ec
            e98aca531188d16041b3bb936d2dbb3b4993a6e768a809160de45d0283f273a6
            cdf6854379e31be72b8d3d1fa990cf9c5b015ca9f918a7df6253c958114a09d4
            e1c19bdcd4db14b29d98db1a74ad405c588662c14a04d0d36aa4ab55e90f8986
            d12d4aad""",
        dkm_child=None,
        dkm_child_dh=None,
        skeyseed_rekey="2d63f6debc92048b4fef3889c4c99ca67d6496e0fac14a2bca9a2d6566ff2398",
    ),
    KdfCase(
        source="NIST ACVP-Server crypto/test/NIST.CVP.Crypto.IKEv2.Tests/IKEv2Tests.cs, "
        "TestName 'IKEv2 SHA2-256' (DKM length 3072 bits)",
        prf_id=PrfId.HMAC_SHA2_256,
        ni="""0a58fea9c1d4fee2e74e1aad6fb02dd5f318eb127465a112be8dc3c04d5dba62
            eae708f9dc1b2362afd6ba4bda3cf5000f4979fbcbadbcfda9291593829c4e90
            5c21db0c2ee15175ce77a8a0dadf25c7f175bc53fd91b636a9b3c50b203de9b9
            d6dc463dcb4048f101e26498ceaed3afbcd931394a7e099392dfff82e5d6fa85
            c2e8a8ab90ad363a66795dc32798847e405acd87988140f973058917273a6b0b
            afb962c75e2b1a21e79c08beeb82168bf8b4b57f3dce867bf7862a7b8acbc21b
            e838021913daf64340c055ed17aaf7b6e1d0ca33ae890ddbdb83f4e615aad5e3
            bff58c3db70bac81a0dfbabe5391fc62bca4659e22a0741e01d8d06e67d9bb41""",
        nr="""e4fdfa68df6171d9eaff8b7b5ad31e7c6098d259f3397c9854cbefe7449b0864
            c1df16ddece8b26567560f8d59182a44c19149c2d0d72606a160021ade3d23c7
            c6936c91a4b6bec37adf38cfc84b851c68dcee06f81306f63abbefc07e231e30
            58c49437a557df617eac01663593d2a3e594699284c0a35eae6931492ccb2a43
            db72a600a3899205d681d2b76b1280e456339bb10e0c584aecfdae31c77a4c40
            dbcb345f782ac32835d4c220c1e97254ded6a40075dd717b00b69c86a49e8017
            73026536ae02d58a649827f1ba67610ee936dffd11c9d5a9156631916a0a0046
            ec0ba42f56f2a18de83d5d71a985b0cc9eec2c06b3d907ca58454419f374069d""",
        gir="9d469de41b4739c7dd01f19aa94f17e48150ae9dbede94832142db19",
        gir_new="c2987b0767006c3b9aea491bfed1646a3d7194639492b8d45b23b383",
        spi_i="c8de93111750e409",
        spi_r="32d51b33508997fa",
        skeyseed="eec13ac67c2e072abb684ab4e7b6ce3e7f400af8b96bed48e113497ed337f8d4",
        dkm="""bc83518f63b762874ac57947cdfae33a8d9724df0b83ee4b6df38c23fc2ad829
            f4d70b5a68dd1f5a52416f09758638aedf919c09a17c5298cdb703bb75b1005c
            ba0109739aaa4efd2fe7534c95ad05e546e4419931270eddcab68ac1589d7fde
            47f5b9e8d5b614cb24ec3caf515497a9e99ee6f1b318ff153b539ef071dcaff9
            b41945dcb780700d69e5dc888a91de195c52825badfd0ab4c33cec71ab5c2b4b
            adefe5455455ce5d8ae91721a2091bcccc1514e69482c9c8da1d9f0f187eedda
            916393570a8c0a8dfabc26d8ed31e8ea47662515972a22d11d692bc1fac6395a
            ecd82a01ab78daafcd6f3070b1201f158a19331b5d21ceee66fccd2ea37bc076
            48b9539a52dbf797af53e31a0e8706dd86cf5081ebabd095f281d23c222dd3bc
            5abf06869017ca8f751cafcc85abea6ba88c139d1f32a12f7f486cf57eae5d85
            551b97f3963616d8f597c70efa98c1e1fa369fb77a80b1ec5fe533890672c455
            1172eab1b7fd68ad08c4d4c69f2a867302065ca730aa6915bc2cfb6d93820977""",
        dkm_child="""c725012285d56e53244a9baaaf95abfca543708d333a3f3a86ba660e00edd4d4
            89bcd631819fda0413382edd9f53d1ed718e056c2ad91d38de90f06cd434de70
            141d051c021e7ddd6e4137946b4770dca59a4decabdd866852eb557fdd995646
            613ff2923f5f23aa58c8fbd5ad52cf2eac9bda97faad5596695f4a747a0f1cc6
            a1f78b2181138fb19ac24574d2e6b3a40d6e688abb919a27d793b76568ec66bd
            099f6f476b705c1472d774a1516a11311b887688f36649e24227640ea8d8666b
            9f452217e7103b6f0a92b6adb8fbda650ba58d6ac13ac6f6b6361a5d1c44f1e9
            f22196c96295115c5d01a120e7265962d20353a049286908da776c2165f706a1
            6f43d85fcd319f89c4386340bcb8ed10df38345cb68af719abaf997e9789a5f1
            9a392dcecd78168ba282f0b30555c7a47031a3156d12d7158aa41b863b8394d3
            0fec63120e89cbc5750eed7786f7d5961b1f2e6faca641ed776d2211bee757b6
            8b77f94056172553715da9fbd1c9a8728f28a2f3c9714a4917490132562484cd""",
        dkm_child_dh="""140a1f2a3c94318ece6edfa8c63f37d8d45982de8b6cbfe34011150db0253e34
            de3796d4aa579954a0bbf234794eb6e7ece2a8f91100f5507df4ee8e66c7813d
            4c0ff64d484a3494c54b0d9c605ea24234a49a010ce5c352feb9e1060c8c7872
            29466296cdc9d11bb9d221ed2bb39544572464254ec02a0fbe777b07402c775e
            b6d3e53cd16214c707f851942cc7da92a811b6c5c82f29d9fc3751b0ebff9898
            fb14372402a6989ffb9cc32dfe7e2cea32fd882e09804d7fea34ce3b5eb6f303
            e095c48a452b0a3eccada81af22195ebbaad289aeabdab074c94e751496bde39
            d868ebf1d693f36d1c3c672bbb59c9f77aeb68de57d77da231b7f13d6d277f60
            0c3d3086c4de7b3a59127f4cb9c118935574f30e1b7c88b52c8c3531fdbd38ee
            3d14c69e81803ced6e7501fa0180f6d110b648272002dc1ad5bf09dc83188011
            da1d48632e0d2453c8abdd8e9fd32a576aeb9ddfb0a024f674441c20a950d9bd
            8cd7b30933cc0d8e87b55e8aa9d913579b410417b3acc13c14bf73c457327873""",
        skeyseed_rekey="05f796c8df322a7e33283ae5fa2f376d8d5efa0ac3745fc548e430031424c121",
    ),
    KdfCase(
        source="NIST CAVP SP 800-135 ikev2 sample, SHA-384 (as reproduced in NSS gtests "
        "ike_sha384_vectors.h, tests 6-8)",
        prf_id=PrfId.HMAC_SHA2_384,
        ni="fd1b572a8e735591",
        nr="6013b0ef88dacd3d",
        gir="d3288cd87565101e88fe3bad918f31939d8dd26ff1071f8b2d7f447524e58d7c",
        gir_new="3358f620539473aee8d07e779764c4c6a9aabddc79a28e136b3bac021dbde44a",
        spi_i="2116ad07ce61f749",
        spi_r="24880e55f11a65b7",
        skeyseed="""69fe7a1ac94adaeb711295f5fe004b1a8d6a0b65d05692758ce8ad2f7a45f59d
            7d0b596f51f7dfcf3330061888f6a94f""",
        dkm="""4f904c2025c90c817ea5ff9b662a6fdb445a73b57cdf09eacd379b95e1f03cac
            b04cd6deeda4f952191dd9bc1f7a9502471a648d74dc06d38112de48a42501f6
            b1a3ad55c2099cd9a648e5f17e5bf3e34bf9b5953decb768a34f875fe2b78dca
            0c2fcca81ec1a412006dfaed38fa06882e61f4c148105fb8e231fdb33c4d484c
            001721d4""",
        dkm_child=None,
        dkm_child_dh=None,
        skeyseed_rekey="""e0548c1682e13bce454026b3b1bdf42985b24e4e7408095a7c529de38c3d1fcb
            04c9fe6868042a34c9614c6c99e3fcea""",
    ),
    KdfCase(
        source="NIST ACVP kdf-components-ikev2-1.0 sample, tgId 13 tcId 241, SHA2-512 "
        "(as used in OpenSSL test/recipes/30-test_evp_data/evpkdf_ikev2.txt)",
        prf_id=PrfId.HMAC_SHA2_512,
        ni="""834EA4753E9A06832072FA15E89E799035A1285CE241CAF3B5C724ECE8ECD0D2
            D1AC46FAB3D9D86BF2EBF4CC8F93E06C5342415E14DFCBC949574E1606F96F14
            3E8AA8C80BCCD376FF3D3BAE0B134A04DD2AE557010E5D7A7552C6864FD8A82D
            99FFDFDA97BE97389A426D7259411B10DD9EEFAE2709141E654087A2056EB86D
            AF95EF262328A2CDD90C61152DC2BBFCF4CCF4084557C3892603023A8B7045FC
            589A35143E10DCD1A73406EA923B21687A12134B6A1007E4AA2E37FFFA4901DF
            F6F3514E2B350F08175E194D3C6DB75E03FD838D503CEFA9E9604A4E18F330C0
            8142574A992465FEA063875ABAF144F47C50F32A0A83224E3EEA739033AF6B9F""",
        nr="""F833709DE457FB58ABE1D26E8DECC8FE889D503954C4812AC0F41271394AF7C1
            48B15A241C2D6D6502C3C57DAE854A97BFB3CCDCEC650153578CCB51BDFE1C71
            5E81F3D78488B1547A3C9E5617D9B78B46D06F56BB56423C88DEACCD82E7A2A1
            1ADD56651091682F0987332EA28A32045A4D39609F364EB5E70468ECB7BBDCAD
            6B41E04ADD11D97F300E8D0A0C2941F1CB64885F940EE2FA273477E910983E96
            913F58E37BFD68E3ADCD6E813176E95FEE7985F5526EEDC3245C4746F5864D9E
            90BF80F6882F6A505ADACD81D106576F7A6C705E37CE551235E012E64EC3BE7B
            4F3F8889E664CC5ED7BCC4A88022A437439609B3019CDE1948665A548E420D1E""",
        gir="""9566A04BF95F433C6497B3AE8CB0F600043F8438EB2B9E97E912AF1C5ACE9A73
            A8884BF1FF80A895EB97A6F5494B6CEA5B1C3123C3A9CBE057A0CBA2F52FD40A
            8DFDF9F99B521D356347E2B70CF637B5B4A44C2ED92770A281E6431CB50BDDCE
            4FB2EC8100218FA84B0A4A344C4DC79BBC81ADD2FD23BC797EFA1B2AFA6840AD
            7B2E04D391F33662774A5296A0EF9C9C113E84F5B958FD54857E75378406F29D
            A1EB23E9E9D9D94177672BFA7742F7F4319F31ED06E1999E17EEAC6B35ADC9A2
            45CAD998E3CE3C422B8AD752F7144332E9AAE44EA837677A8406B7261C04CB4E
            B9230FBA75E09E16EEDA246D5B1DA5CF14C96F00FC83C555854E7982E52A1D4F""",
        gir_new="""F34450EC9F4B07881FF17DB4AE1681B26F2FC8CBECDB7EF0463B09C4FE79F841
            4FBEA9FD3E7C18C845D04E283E1EEB7824484C72354A7A9C418E69B8134D596E
            1ABCD2998EA5FABCA1FD156678BF7FB0F31C1158E812FD215837A23938BAC55B
            37C6E8BECEDF9435A03484326CD2D4E3C7A273D8A99135027AA17823DA9BF026
            3082394CA3475266F5BAE91D1577C3D15A7DD429E1F5DE70138B05214589EF8A
            519AA930A42F609CCC54CE8701488E80C2BEACCA2542C0D9B2DD7C04E41EBBC3
            41EB65A3F786900747FA6CA2CF914E908FEA40014D3175B73DA1B63437A89638
            F69E184FD91E6A02C0F9FC9AFAFE7B6811B3AC7A57B2615A3B3FC26289500143""",
        spi_i="6E5F49D279F4FBBB",
        spi_r="FF7AE472AA4DD7AF",
        skeyseed="""3DAA296C25DD8CBDE8E9F5FE85498CB06339FC7AAA93F60987831A0FA79829E2
            44AFE92BD66590D8C7F1BC281BADC619ED2C9762FDB913B052842E50E3989863""",
        dkm="""2BD66826C397A19618E3133ACE96F6168A04EF9AFA53F2F07CECDA9E0F6139C3
            7CC6512551F523006B74D501C5DD1AE502689ECE8A43CE7B3D866C7372176B1D
            5BC4A0B863F642351FD4822C79F0A8D97B03B09FA1393679149432798BEA545F
            70C663675E751A68AEEB7B238CA790229C7775E6A074BECDFAAD324AC546EEB5
            D0A9480B1AA06B6F225CBFAC7447DE3D8D292B0BEB7D9A5B709C02946A10F879
            9DD4E4B18C6D10CEDA39A82B9DAE01EFEBE6C31735590EF7D44E1C8DBBAD98DA
            FE620843065E5141D7C57770234128599E3223139656DBB3D0C494FABA482AE9
            740FAA3D3957EFD9D90FD24144BC9B317C7955722426A6719D0095D068FD0B63
            469140D1EF9DDEFC43B2BCFFF971A08A7E67E75B8F0DED8C4737175ABF04C32B
            906FE7D53E8C3B11B3829DB0082B73F44C042C285F079A3BD6C33F91559F3104
            3E23BB0A79B83C93AAF1CFEAF6C5996E717869C2D7F6528C8ACAE6656A843016
            4886385441484107261DE0D9A9B6B39A24812CCFA24C1F964AEAC69CE6D00541""",
        dkm_child="""0B0D01A13515AC0727F7D90456D3D2FD9C1172096CDED4A20BDA43FC796184BA
            EB3A7F34FFC09C584DD9BEEBC7629A36A5D143DFB1C2931F369E6702769B6A01
            AA20B7B955C30481D7894DF2AEBAB0DD669C3E1E168BE5F122F8A9D8A589F3C6
            C48EFC031129481E2DEA1F6FC10E07F3E39A1FCC3D660E289778458E75280250
            1DBDE1EB0EDE3D2227DE7FAE3F265D66986B1AE4CF407EDC3A5168A6179ED8CA
            2006ACC2D9104749C3E2231482374E5F0CE3DA3C8B8520D37F37092669FBB78E
            AA4CC818BE8CA31935529E085BCE3830040F679883E3375C274CEF5BF5F36F34
            D8705B9EC48B4DC2FE9E3A269B41BED2D659767726DC775404610ED1B285067D
            900D20A38D02192475D2934AE8E4C47B4CF5729A42FEC7AF15C01AEB019069F2
            C87F2E6429D6CB2755384980DFAB9173C70AEDB30611A05FCD03078F2CAA8CB3
            23452D6E899197992CF3B93343EEBAA1251E1D8F0B3664D0D0310217889510885
            D319C2BD8CD3A8FD49848D8331F8C248E6C3C7B6E3D4E376F7BC71FF10D66D1""",
        dkm_child_dh="""48E185DC18E52193E01ECA3C0D739C3070A73B89A4D0FAC7B40E4D51250EEAE7
            232C2031DAA700E3A2D570BA67ECA56F1DBE5DE5B96CD718FAF2FCC7EBCA08D1
            FEFA2DB5B024CC9A03F50EF310D43A3E66D53912AF846CFF6BB039CBFF37BDD1
            C2D329993A98D3FAF9026A32EBF6747E347115AA3C604D187A25204407DB7E3F
            D4E1D28300E898028542C4B8D3C4EB26BD0ADF87439CCB7C0230351D38C92772
            CA234B887CA8F7667B4FBB9619151D75FECB2C30F570BC0EEDD5C6D89F39DE1A
            547AC99CFB7CF608AD4C56C83077E97CE850BE40344177CBEF2F22E37353E6A1
            64A2683DE957A48754E8E74331A07503069E8ED44C68F27C0A414D582AA2DD7A
            66098E3C4D0BE5F0CC5FE9EBC042C3E794E53639A452F0449685DC3FC34C0EAE
            58AF6C7E862FAF0FC2E2C8F57C889E1DC19E8DAE2E92F828A3F01A1D3DBDCF3C
            7A0F61828E0E5C26E559E8D1320110D8477FF8A28D90BC9693BB99E10B7A3EA6
            2E3559D7CC2E54279012D2C3CC7FBA3349E098D6756BCC7EE62507B350DBF3A3""",
        skeyseed_rekey="""1CC9237EBB1704D703952B6EDBE275CA51AC17E2E224F13E38F4C49F5FA9AF00
            F8ECB96FA0ECD6FF282C08A29D3E313AB4A4EE1022580118B8DEFF0CD8432A00""",
    ),
]

IDS = [f"{c.prf_id.name}-{i}" for i, c in enumerate(CASES)]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_skeyseed(case: KdfCase):
    """RFC 7296 §2.14 SKEYSEED = prf(Ni | Nr, g^ir), SP 800-135 vectors."""
    assert skeyseed(case.prf_id, H(case.ni), H(case.nr), H(case.gir)) == H(case.skeyseed)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dkm(case: KdfCase):
    """RFC 7296 §2.14 prf+(SKEYSEED, Ni | Nr | SPIi | SPIr), SP 800-135 vectors."""
    seed = H(case.ni) + H(case.nr) + H(case.spi_i) + H(case.spi_r)
    dkm = H(case.dkm)
    assert prf_plus(case.prf_id, H(case.skeyseed), seed, len(dkm)) == dkm


@pytest.mark.parametrize("case", [c for c in CASES if c.dkm_child], ids=[i for i, c in zip(IDS, CASES) if c.dkm_child])
def test_child_keymat(case: KdfCase):
    """RFC 7296 §2.17 KEYMAT = prf+(SK_d, Ni | Nr) and prf+(SK_d, g^ir (new) | Ni | Nr)."""
    sk_d = H(case.dkm)[: get_prf(case.prf_id).output_size]
    child = H(case.dkm_child)
    child_dh = H(case.dkm_child_dh)
    assert child_keymat(case.prf_id, sk_d, H(case.ni), H(case.nr), len(child)) == child
    assert child_keymat(case.prf_id, sk_d, H(case.ni), H(case.nr), len(child_dh), H(case.gir_new)) == child_dh


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_rekey_skeyseed(case: KdfCase):
    """RFC 7296 §2.18 SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)."""
    sk_d = H(case.dkm)[: get_prf(case.prf_id).output_size]
    assert rekey_skeyseed(case.prf_id, sk_d, H(case.gir_new), H(case.ni), H(case.nr)) == H(case.skeyseed_rekey)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_seven_keys_are_the_dkm_split(case: KdfCase):
    """RFC 7296 §2.14: SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr taken in order."""
    keys = derive_ike_sa_keys(
        case.prf_id, EncrId.AES_CBC, 128, IntegId.HMAC_SHA1_96,
        H(case.gir), H(case.ni), H(case.nr), H(case.spi_i), H(case.spi_r),
    )
    p = get_prf(case.prf_id).output_size
    sizes = [p, 20, 20, 16, 16, p, p]
    seed = H(case.ni) + H(case.nr) + H(case.spi_i) + H(case.spi_r)
    stream = prf_plus(case.prf_id, H(case.skeyseed), seed, sum(sizes))
    expected = []
    pos = 0
    for s in sizes:
        expected.append(stream[pos:pos + s])
        pos += s
    assert keys.skeyseed == H(case.skeyseed)
    assert [keys.sk_d, keys.sk_ai, keys.sk_ar, keys.sk_ei, keys.sk_er, keys.sk_pi, keys.sk_pr] == expected
    # the published DKM starts with the same SK_d | SK_ai octets
    assert stream[: min(len(stream), len(H(case.dkm)))] == H(case.dkm)[: len(stream)]


def test_rekeyed_ike_sa_uses_old_prf_for_skeyseed_and_new_prf_for_prf_plus():
    """RFC 7296 §2.18: old IKE SA's PRF for SKEYSEED, new IKE SA's PRF, SPIs and nonces for prf+."""
    case = CASES[0]
    sk_d_old = H(case.dkm)[:20]
    spi_i, spi_r = b"\x11" * 8, b"\x22" * 8
    keys = derive_rekeyed_ike_sa_keys(
        PrfId.HMAC_SHA1, sk_d_old, PrfId.HMAC_SHA2_256, EncrId.AES_GCM_16, 256, IntegId.NONE,
        H(case.gir_new), H(case.ni), H(case.nr), spi_i, spi_r,
    )
    assert keys.skeyseed == H(case.skeyseed_rekey)
    stream = prf_plus(PrfId.HMAC_SHA2_256, keys.skeyseed, H(case.ni) + H(case.nr) + spi_i + spi_r, 32 + 36 + 36 + 64)
    assert keys.sk_d == stream[:32]
    assert keys.sk_ai == keys.sk_ar == b""
    assert keys.sk_ei == stream[32:68] and keys.sk_er == stream[68:104]
    assert keys.sk_pi == stream[104:136] and keys.sk_pr == stream[136:168]


@pytest.mark.parametrize("case", [c for c in CASES if c.dkm_child], ids=[i for i, c in zip(IDS, CASES) if c.dkm_child])
def test_child_sa_keys_order(case: KdfCase):
    """RFC 7296 §2.17: encr_i | integ_i | encr_r | integ_r, initiator-to-responder first."""
    sk_d = H(case.dkm)[: get_prf(case.prf_id).output_size]
    keymat = H(case.dkm_child)
    keys = derive_child_sa_keys(case.prf_id, sk_d, EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, H(case.ni), H(case.nr))
    assert (keys.encr_i, keys.integ_i, keys.encr_r, keys.integ_r) == (
        keymat[0:16], keymat[16:48], keymat[48:64], keymat[64:96]
    )
    keymat_dh = H(case.dkm_child_dh)
    keys = derive_child_sa_keys(
        case.prf_id, sk_d, EncrId.AES_GCM_16, 256, IntegId.NONE, H(case.ni), H(case.nr), H(case.gir_new)
    )
    assert (keys.encr_i, keys.integ_i, keys.encr_r, keys.integ_r) == (keymat_dh[0:36], b"", keymat_dh[36:72], b"")


@pytest.mark.parametrize(
    "encr_id,key_length,size",
    [
        (EncrId.AES_CBC, 128, 16), (EncrId.AES_CBC, 192, 24), (EncrId.AES_CBC, 256, 32),
        (EncrId.AES_GCM_8, 128, 20), (EncrId.AES_GCM_12, 192, 28), (EncrId.AES_GCM_16, 256, 36),
        (EncrId.CHACHA20_POLY1305, None, 36), (EncrId.NULL, None, 0),
    ],
)
def test_encr_key_sizes(encr_id, key_length, size):
    """RFC 7296 §3.3.5, RFC 5282 §7.1 / RFC 4106 §8.1 (GCM salt), RFC 7634 §2 (ChaCha20 salt)."""
    assert encr_key_size(encr_id, key_length) == size


@pytest.mark.parametrize("encr_id,key_length", [(EncrId.AES_CBC, None), (EncrId.AES_CBC, 100), (EncrId.AES_GCM_16, 64),
                                                (EncrId.CHACHA20_POLY1305, 128), (EncrId.DES, None), (77, 128)])
def test_bad_encr_transforms_are_refused(encr_id, key_length):
    with pytest.raises(CryptoError):
        encr_key_size(encr_id, key_length)


def test_aead_with_integ_is_refused():
    with pytest.raises(CryptoError, match="AEAD"):
        derive_ike_sa_keys(PrfId.HMAC_SHA2_256, EncrId.AES_GCM_16, 128, IntegId.HMAC_SHA2_256_128,
                           b"s" * 32, b"n" * 16, b"m" * 16, b"i" * 8, b"r" * 8)


def test_key_repr_hides_key_material():
    keys = derive_ike_sa_keys(PrfId.HMAC_SHA2_256, EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128,
                              b"\xab" * 32, b"n" * 16, b"m" * 16, b"i" * 8, b"r" * 8)
    text = repr(keys)
    assert "sk_ei=<16 octets>" in text
    assert keys.sk_ei.hex() not in text and "\\x" not in text


def test_child_keymat_is_split_in_rfc_7296_order_for_32_octet_keys():
    # RFC 7296 §2.17: KEYMAT = prf+(SK_d, Ni | Nr), encryption then integrity key, i->r first;
    # prf+ computed here by hand (T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n))
    import hashlib
    import hmac as hmac_
    from lab.ike.const import EncrId as E, IntegId as I, PrfId as P
    from lab.ike.crypto import derive_child_sa_keys
    sk_d, ni, nr = bytes(range(32)), b"\x11" * 32, b"\x22" * 32
    out, t, n = b"", b"", 1
    while len(out) < 128:
        t = hmac_.new(sk_d, t + ni + nr + bytes([n]), hashlib.sha256).digest()
        out, n = out + t, n + 1
    keys = derive_child_sa_keys(P.HMAC_SHA2_256, sk_d, E.AES_CBC, 256, I.HMAC_SHA2_256_128, ni, nr)
    assert (keys.encr_i, keys.integ_i, keys.encr_r, keys.integ_r) == (out[:32], out[32:64], out[64:96], out[96:128])


def test_child_keymat_with_additional_key_exchanges_takes_every_secret_in_order():
    # RFC 9370 §2.2.4: KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n)), SK(0) = g^ir (new)
    # (RFC 7296 §2.17); prf+ computed here by hand
    import hashlib
    import hmac as hmac_
    from lab.ike.const import EncrId as E, IntegId as I, PrfId as P
    from lab.ike.crypto import derive_child_sa_keys
    sk_d, ni, nr = bytes(range(32)), b"\x11" * 32, b"\x22" * 32
    gir, sk1, sk2 = b"\x33" * 32, b"\x44" * 48, b"\x55" * 56
    seed = gir + ni + nr + sk1 + sk2
    out, t, n = b"", b"", 1
    while len(out) < 72:
        t = hmac_.new(sk_d, t + seed + bytes([n]), hashlib.sha256).digest()
        out, n = out + t, n + 1
    keys = derive_child_sa_keys(P.HMAC_SHA2_256, sk_d, E.AES_GCM_16, 256, I.NONE, ni, nr, gir, (sk1, sk2))
    assert (keys.encr_i, keys.integ_i, keys.encr_r, keys.integ_r) == (out[:36], b"", out[36:72], b"")
    # the order of the additional secrets is part of the key
    swapped = derive_child_sa_keys(P.HMAC_SHA2_256, sk_d, E.AES_GCM_16, 256, I.NONE, ni, nr, gir, (sk2, sk1))
    assert swapped.encr_i != keys.encr_i
    # without them the keys differ: no secret may be left out
    assert derive_child_sa_keys(P.HMAC_SHA2_256, sk_d, E.AES_GCM_16, 256, I.NONE, ni, nr, gir).encr_i != keys.encr_i


def test_child_keymat_refuses_additional_secrets_without_the_first_key_exchange():
    from lab.ike.const import EncrId as E, IntegId as I, PrfId as P
    from lab.ike.crypto import derive_child_sa_keys
    with pytest.raises(CryptoError, match="RFC 9370"):
        derive_child_sa_keys(P.HMAC_SHA2_256, b"\x00" * 32, E.AES_GCM_16, 256, I.NONE, b"\x11" * 32, b"\x22" * 32,
                             None, (b"\x44" * 32,))
